//! Deaths, hangs and what follows: hot-standby failover, a spare taking over,
//! fresh restarts and quarantine (as [`RestartPolicy`](crate::restart::RestartPolicy)
//! decides), standbys, and the heartbeat check.
//!
//! [`Failover`] owns what this remembers between events (the spares owed to
//! modules, the creates on their second worker, the workers judged by the
//! heartbeat check) and decides on it alone; the core's methods below tie it to
//! the modules, the workers and the pool.

use super::*;
use std::collections::BTreeSet;

/// What failover owes and remembers from one event to the next.
#[derive(Debug, Default)]
pub struct Failover {
    /// Modules waiting for a spare to become their standby.
    needs_standby: BTreeSet<String>,
    /// Modules without a primary waiting for a spare to take them over (`true`:
    /// from a fresh state).
    needs_replacement: BTreeMap<String, bool>,
    /// Modules whose create is on its second worker (the first died during it).
    create_retried: HashSet<String>,
    /// When the heartbeats are checked next.
    next_heartbeat: Option<Instant>,
    /// Workers killed as hung whose death has not arrived yet: not judged again.
    killed_as_hung: HashSet<WorkerId>,
    /// Behind, not hung (waiting for the server to call them): logged once.
    waiting_to_be_called: HashSet<WorkerId>,
}

/// The JACK server's last cycle, which the heartbeat check counts periods by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    /// Its first frame.
    pub frame: u32,
    /// Its length in frames.
    pub period: u32,
}

impl Cycle {
    /// Whole periods from `frame` to this cycle. Frame times wrap around; a
    /// `frame` after the cycle (published since it began) counts as 0 or less.
    pub fn periods_since(self, frame: u32) -> i32 {
        self.frame.wrapping_sub(frame) as i32 / self.period.max(1) as i32
    }
}

/// The heartbeat check's judgement of a worker more than [`HANG_PERIODS`] behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hung, for this reason: to be killed (it is not judged again).
    Hung(String),
    /// Not hung: it waits for the server to call it. `first`: not said before
    /// during this stall (it is logged once).
    Waiting {
        /// The first check of this stall that found it so.
        first: bool,
    },
}

impl Failover {
    /// Module `id` waits for a spare to become its standby.
    pub fn owe_standby(&mut self, id: &str) {
        self.needs_standby.insert(id.to_string());
    }

    /// Module `id` lost its primary and waits for a spare to take it over (`fresh`:
    /// from a new state).
    pub fn owe_replacement(&mut self, id: &str, fresh: bool) {
        self.needs_replacement.insert(id.to_string(), fresh);
    }

    /// The next module owed a replacement, with whether it starts fresh. Modules
    /// without a primary are served before anything else (see `Core::serve_one`).
    pub fn next_replacement(&mut self) -> Option<(String, bool)> {
        self.needs_replacement.pop_first()
    }

    /// The next module owed a standby.
    pub fn next_standby(&mut self) -> Option<String> {
        self.needs_standby.pop_first()
    }

    /// How many modules wait for a standby.
    pub fn standbys_owed(&self) -> usize {
        self.needs_standby.len()
    }

    /// How many modules wait for a replacement (spares the pool must provide).
    pub fn replacements_owed(&self) -> usize {
        self.needs_replacement.len()
    }

    /// Module `id` no longer waits for a standby (freed, or its standby dropped).
    pub fn cancel_standby(&mut self, id: &str) {
        self.needs_standby.remove(id);
    }

    /// Module `id` no longer waits for a replacement (freed, quarantined).
    pub fn cancel_replacement(&mut self, id: &str) {
        self.needs_replacement.remove(id);
    }

    /// The worker of module `id`'s create died before the module played: whether
    /// the create gets another worker. Once only: a module that crashes every
    /// worker it starts on must fail, not take the whole pool down with it.
    pub fn retry_create(&mut self, id: &str) -> bool {
        if self.create_retried.insert(id.to_string()) {
            true
        } else {
            self.create_retried.remove(id);
            false
        }
    }

    /// Module `id`'s create is over (done or failed): a later create of the same
    /// id gets its own retry.
    pub fn create_over(&mut self, id: &str) {
        self.create_retried.remove(id);
    }

    /// Module `old` is called `new` from now on (a prepared set's module after its
    /// switch): what it is owed follows it.
    pub fn rename_module(&mut self, old: &str, new: &str) {
        if self.needs_standby.remove(old) {
            self.needs_standby.insert(new.to_string());
        }
        if let Some(fresh) = self.needs_replacement.remove(old) {
            self.needs_replacement.insert(new.to_string(), fresh);
        }
        if self.create_retried.remove(old) {
            self.create_retried.insert(new.to_string());
        }
    }

    /// Whether the heartbeats are to be checked at `now`; if so, the next check
    /// is due [`HEARTBEAT_INTERVAL`] later.
    pub fn heartbeat_due(&mut self, now: Instant) -> bool {
        let due = self.next_heartbeat.is_none_or(|t| now >= t);
        if due {
            self.next_heartbeat = Some(now + HEARTBEAT_INTERVAL);
        }
        due
    }

    /// When the heartbeats are checked next (`None`: at the first tick).
    pub fn heartbeat_deadline(&self) -> Option<Instant> {
        self.next_heartbeat
    }

    /// Whether worker `wid` was killed as hung and its death has not arrived yet.
    pub fn is_killed_as_hung(&self, wid: WorkerId) -> bool {
        self.killed_as_hung.contains(&wid)
    }

    /// Worker `wid` is gone: a new worker of the same number is judged afresh.
    pub fn departed(&mut self, wid: WorkerId) {
        self.killed_as_hung.remove(&wid);
    }

    /// The workers more than [`HANG_PERIODS`] behind at this check are `behind`:
    /// any other has caught up since, and a later stall of it is logged again.
    pub fn only_behind(&mut self, behind: &[WorkerId]) {
        self.waiting_to_be_called.retain(|w| behind.contains(w));
    }

    /// Judges worker `wid`, `periods` behind `cycle` (more than [`HANG_PERIODS`]),
    /// doing `silence`. Hung if it is stopped, or has been inside one period for
    /// more than [`HANG_PERIODS`]; one that waits to be called is hung only once
    /// the server has left it out for [`ABANDONED_PERIODS`] while `graph_runs`
    /// (most modules play). A hung worker counts as killed from now on.
    pub fn judge(
        &mut self,
        wid: WorkerId,
        periods: i32,
        silence: Silence,
        cycle: Cycle,
        graph_runs: bool,
    ) -> Verdict {
        let why = match silence {
            Silence::Stopped => "stopped".to_string(),
            Silence::InPeriod(since) if cycle.periods_since(since) > HANG_PERIODS as i32 => {
                format!("inside one period for {}", cycle.periods_since(since))
            }
            Silence::Waiting if graph_runs && periods > ABANDONED_PERIODS as i32 => {
                "not called by the server while the rest plays".to_string()
            }
            _ => {
                let first = self.waiting_to_be_called.insert(wid);
                return Verdict::Waiting { first };
            }
        };
        self.killed_as_hung.insert(wid);
        Verdict::Hung(why)
    }
}

impl Core {
    pub(super) fn handle_departure(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        let Some(worker) = self.workers.remove(&wid) else {
            return;
        };
        self.failover.departed(wid);
        self.pool.forget(wid);
        // A standby host's seats die with it (channel or process, whichever is
        // seen first); each is then dealt with as the worker it is in the core.
        let seats: Vec<Worker> = self
            .seats
            .host_gone(wid)
            .into_iter()
            .filter_map(|s| {
                self.failover.departed(s);
                self.workers.remove(&s)
            })
            .collect();
        if self.shutting_down {
            self.stop_next_workers(fx);
            return;
        }
        if worker.role == Role::Retiring {
            return;
        }
        self.counters.crash_count += 1;
        tracing::warn!(
            "worker {} (pid {}) is gone",
            worker.link.client,
            worker.link.pid
        );
        for role in std::iter::once(worker.role).chain(seats.into_iter().map(|s| s.role)) {
            self.lost(role, fx);
        }
        self.refill(fx);
    }

    /// A worker (or seat) that was `role` is gone.
    fn lost(&mut self, role: Role, fx: &mut impl Effects) {
        match role {
            Role::Standby(id) => {
                // A standby's death only needs a new standby. One that was taking
                // its module back from a seat leaves the seat playing it: the
                // next standby starts the hand-back again. If it was told to take
                // over, its handover frame may have passed: it owned the module
                // and the seat went silent, so the seat takes it back from the
                // dead as any new owner does (`hand_over`: `TakeNames` and every
                // value again, since the state it reloads is the dead one's; its
                // `TookOver` ends that as a failover).
                let mut was_taking_over = false;
                if let Some(m) = self.modules.get_mut(&id) {
                    was_taking_over =
                        matches!(m.handback, Some(seats::HandBack::TakingOver { .. }));
                    m.standby_worker = None;
                    m.standby_ports.clear();
                    m.handback = None;
                    m.degraded_since.get_or_insert(fx.now());
                }
                if was_taking_over {
                    self.hand_over(&id, fx);
                }
                self.add_standby(&id, fx);
            }
            Role::Primary(id) => self.primary_died(&id, fx),
            _ => {}
        }
    }

    /// Module `id` lost its primary: the restart policy says how it goes on.
    pub(super) fn primary_died(&mut self, id: &str, fx: &mut impl Effects) {
        let now = fx.now();
        let policy = self.config.restart;
        let Some(m) = self.modules.get(id) else {
            return;
        };
        if m.quarantined {
            return;
        }
        if m.ports.is_empty() && m.recovering_since.is_none() {
            // It died while being created: nothing played yet, the create fails.
            return self.died_while_created(id, fx);
        }
        // A replacement that died before it was ready is just another death.
        self.requests
            .retain(|p| !matches!(p, Pending::Replace { id: r, .. } if r == id));
        self.notify(fx, osc::message("/module/died", vec![osc::text(id)]));
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        let standby_ready = m.standby_worker.is_some() && !m.standby_ports.is_empty();
        // A seat that was handing the module back died: its standby takes it over
        // as any standby does.
        m.handback = None;
        let recovery = policy.decide(&mut m.history, now, standby_ready);
        m.worker = NO_WORKER;
        m.ports.clear();
        m.playing_since = None;
        m.recovering_since = Some(now);
        m.degraded_since.get_or_insert(now);
        tracing::warn!("module {id} lost its worker: {recovery:?}");
        match recovery {
            Recovery::Standby => {
                self.fail_over(id, fx);
            }
            Recovery::Spare => {
                // A standby still being set up watches the dead primary: it is of
                // no use; the replacement gets a new one.
                self.drop_standby(id, fx);
                self.replace(id, false, fx);
            }
            Recovery::Fresh => {
                self.drop_standby(id, fx);
                self.counters.fresh_restarts += 1;
                self.replace(id, true, fx);
            }
            Recovery::Quarantine => self.quarantine(id, fx),
        }
    }

    /// The primary died before its module was confirmed (killed, or crashed while
    /// opening the module): the create is tried once more on another worker, at
    /// the head of the queue, so one bad worker fails no create; if that one dies
    /// too (a module that crashes every worker it starts on), the create fails and
    /// the module is gone.
    pub(super) fn died_while_created(&mut self, id: &str, fx: &mut impl Effects) {
        let Some(m) = self.modules.remove(id) else {
            return;
        };
        fx.unlink_state(&m.state);
        if let Some(standby) = m.standby_worker {
            if self.is_seat(standby) {
                // A seat cannot exit: it lets the module go and is free again.
                self.free_worker(standby, fx);
            } else {
                self.retire(standby, fx);
            }
        }
        let creates = self
            .requests
            .tokens(|p| matches!(p, Pending::Create { id: c, .. } if c == id));
        for t in creates {
            let Some(Pending::Create {
                from, id, started, ..
            }) = self.requests.remove(t)
            else {
                continue;
            };
            if self.failover.retry_create(&id) {
                tracing::warn!("the worker of {id} died while starting it: trying another");
                if let Some(state) = m.plugin_state.clone() {
                    self.plugin_states.bring(&id, state);
                }
                let request = Request::New {
                    spec: m.spec,
                    params: (0..m.spec.params.len()).map(|i| (i, m.params[i])).collect(),
                    id,
                    standby: m.standby,
                };
                self.modules.wait_first(from, request, started);
                if self.pool.spares() > 0 {
                    self.serve_one(fx);
                }
            } else {
                self.create_failed(from, &id, "its worker died while starting it, twice", fx);
            }
        }
    }

    /// Lets go of module `id`'s standby (it watches a dead primary, or maps a state
    /// that makes workers crash); the worker itself is fine and returns to the pool.
    pub(super) fn drop_standby(&mut self, id: &str, fx: &mut impl Effects) {
        self.failover.cancel_standby(id);
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        m.standby_ports.clear();
        m.handback = None;
        if let Some(standby) = m.standby_worker.take() {
            self.free_worker(standby, fx);
        }
    }

    /// A spare takes module `id` over: from its shared state (the old owner is
    /// dead), or from a fresh one. Without a spare now, the next one is used.
    pub(super) fn replace(&mut self, id: &str, fresh: bool, fx: &mut impl Effects) {
        let token = self.token();
        let Some(m) = self.modules.get(id) else {
            return;
        };
        let Some(wid) = self.pool.take() else {
            self.failover.owe_replacement(id, fresh);
            self.refill(fx);
            return;
        };
        if fresh {
            // The old state made workers crash: start over from a new segment.
            fx.unlink_state(&m.state);
        }
        let assign = ToWorker::Assign {
            token,
            id: id.to_string(),
            module_type: m.spec.name.to_string(),
            params: m.param_values(),
            role: if fresh {
                WorkerRole::Primary
            } else {
                WorkerRole::Replacement
            },
            state: m.state.clone(),
            // A fresh start drops the plugin's state with the rest: it may be
            // what made it crash.
            plugin_state: if fresh { None } else { m.plugin_state.clone() },
        };
        if fresh {
            if let Some(m) = self.modules.get_mut(id) {
                m.plugin_state = None;
            }
        }
        self.requests.insert(
            token,
            Pending::Replace {
                id: id.to_string(),
                fresh,
            },
        );
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Primary(id.to_string());
            fx.send(&w.link, assign);
        }
        self.mute_if_prepared(id, wid, fx);
        self.pool.refill_soon(fx.now());
    }

    /// The replacement's ports exist: it is the module's primary now.
    pub(super) fn replaced(
        &mut self,
        wid: WorkerId,
        id: &str,
        fresh: bool,
        result: Result<Vec<String>, String>,
        fx: &mut impl Effects,
    ) {
        let ports = match result {
            Ok(ports) => ports,
            Err(reason) => {
                tracing::error!("replacing the worker of {id} failed: {reason}");
                self.retire(wid, fx);
                return self.quarantine(id, fx);
            }
        };
        let now = fx.now();
        let Some(m) = self.modules.get_mut(id) else {
            // Freed meanwhile.
            return self.retire(wid, fx);
        };
        m.taken_over_by(wid, ports, now);
        self.counters.replacements += 1;
        let links: Vec<(usize, String)> = m.links.iter().cloned().collect();
        if fresh {
            // A fresh primary named its ports when it was assigned.
            self.finish_recovery(id, None, fx);
        } else {
            self.hand_over(id, fx);
        }
        self.restore_links(id, &links, fx);
        self.make_wanted_connections(fx);
        tracing::warn!(
            "module {id} was taken over by a pool spare{}",
            if fresh { " from a fresh state" } else { "" }
        );
        self.add_standby(id, fx);
    }

    /// Module `id`'s new primary (its standby, or a spare that mapped its state)
    /// already plays it: give its ports the module's names and send it every value
    /// again. Changes sent to the dead primary may not have landed; the supervisor's
    /// copy is what the user last set.
    pub(super) fn hand_over(&mut self, id: &str, fx: &mut impl Effects) {
        let Some(m) = self.modules.get(id) else {
            return;
        };
        let Some(w) = self.workers.get(&m.worker) else {
            return;
        };
        fx.send(&w.link, ToWorker::TakeNames { id: id.to_string() });
        self.resend_values(id, fx);
    }

    /// Sends module `id`'s primary every parameter value the supervisor holds.
    pub(super) fn resend_values(&mut self, id: &str, fx: &mut impl Effects) {
        let Some(m) = self.modules.get(id) else {
            return;
        };
        let Some(w) = self.workers.get(&m.worker) else {
            return;
        };
        for (index, value) in m.param_values() {
            let change = ToWorker::SetParam {
                index,
                value,
                at: None,
                received: 0,
            };
            fx.send(&w.link, change);
        }
    }

    /// The module's new primary has its names and has played its first period.
    pub(super) fn finish_recovery(
        &mut self,
        id: &str,
        silent_frames: Option<u32>,
        fx: &mut impl Effects,
    ) {
        let now = fx.now();
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        if let Some(since) = m.recovering_since.take() {
            self.counters
                .failover_time_ms
                .record(now.duration_since(since).as_secs_f64() * 1e3);
        }
        if let Some(gap) = silent_frames {
            self.counters.failover_silent_frames.record(gap as f64);
        }
        let gap = silent_frames.map_or(-1, |g| g.min(i32::MAX as u32) as i32);
        self.notify(
            fx,
            osc::message("/module/failover", vec![osc::text(id), OscType::Int(gap)]),
        );
    }

    /// Leaves module `id` silent after a crash loop: no worker plays it, its state
    /// is dropped, it stays listed (and its connections remembered) until freed or
    /// created anew.
    pub(super) fn quarantine(&mut self, id: &str, fx: &mut impl Effects) {
        self.drop_standby(id, fx);
        self.failover.cancel_replacement(id);
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        m.quarantined = true;
        m.worker = NO_WORKER;
        m.ports.clear();
        m.recovering_since = None;
        m.degraded_since = None;
        fx.unlink_state(&m.state);
        self.counters.quarantined += 1;
        tracing::error!(
            "module {id} keeps crashing: quarantined (silent); free it or create it again"
        );
        self.notify(
            fx,
            osc::message(
                "/module/quarantined",
                vec![osc::text(id), osc::text("its workers kept crashing")],
            ),
        );
    }

    /// Gives module `id` a hot standby: same type and ports, the state segment
    /// mapped, silent until its primary dies. It takes a free seat or a spare, as
    /// the placement says (`Core::standby_place`); without either now, the next
    /// one that arrives is used.
    pub(super) fn add_standby(&mut self, id: &str, fx: &mut impl Effects) {
        let Some(m) = self.modules.get(id) else {
            return;
        };
        if m.standby != Standby::Hot || m.standby_worker.is_some() || self.shutting_down {
            return;
        }
        let Some(primary_pid) = self.workers.get(&m.worker).map(|w| w.link.pid) else {
            return;
        };
        let (module_type, params, state, plugin_state) = (
            m.spec.name.to_string(),
            m.param_values(),
            m.state.clone(),
            m.plugin_state.clone(),
        );
        let Some(wid) = self.standby_place(id) else {
            self.failover.owe_standby(id);
            self.pool.refill_soon(fx.now());
            return;
        };
        let token = self.token();
        let assign = ToWorker::Assign {
            token,
            id: id.to_string(),
            module_type,
            params,
            role: WorkerRole::Standby { primary_pid },
            state,
            plugin_state,
        };
        if let Some(m) = self.modules.get_mut(id) {
            m.standby_worker = Some(wid);
        }
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Standby(id.to_string());
            self.requests
                .insert(token, Pending::Standby { id: id.to_string() });
            fx.send(&w.link, assign);
        }
        self.mute_if_prepared(id, wid, fx);
        self.pool.refill_soon(fx.now());
    }

    /// The standby's ports exist: give them the primary's connections.
    pub(super) fn standby_assigned(
        &mut self,
        wid: WorkerId,
        id: &str,
        result: Result<Vec<String>, String>,
        fx: &mut impl Effects,
    ) {
        match result {
            Ok(ports) => {
                let now = fx.now();
                let Some(m) = self
                    .modules
                    .get_mut(id)
                    .filter(|m| m.standby_worker == Some(wid))
                else {
                    // Let go of meanwhile (module freed, crash loop): the Free sent
                    // then is queued behind the assignment and returns it to the pool.
                    return;
                };
                m.standby_ports = ports;
                if let Some(since) = m.degraded_since.take() {
                    self.counters
                        .rebuild_time_ms
                        .record(now.duration_since(since).as_secs_f64() * 1e3);
                }
                let pairs: Vec<(String, String, bool)> = m
                    .ports
                    .iter()
                    .zip(&m.standby_ports)
                    .zip(m.spec.ports)
                    .map(|((p, s), spec)| {
                        (
                            p.clone(),
                            s.clone(),
                            spec.direction == catalog::Direction::Out,
                        )
                    })
                    .collect();
                // Connections made by hand (qjackctl, jack_connect) are copied too.
                for (primary, standby, output) in pairs {
                    for other in fx.connections(&primary) {
                        let (src, dst) = if output {
                            (&standby, &other)
                        } else {
                            (&other, &standby)
                        };
                        self.jack_patch_logged(true, src, dst, format!("standby of {id}"), fx);
                    }
                }
                self.make_wanted_connections(fx);
                self.hand_back_when_mirrored(id, wid, fx);
            }
            Err(reason) => match self.modules.get_mut(id) {
                // Freed while its standby was being set up: the worker is unharmed
                // (it tries the state before its ports), back to the pool with it.
                None => self.make_spare(wid),
                Some(m) => {
                    tracing::error!("no standby for {id}: {reason}");
                    m.standby_worker = None;
                    self.retire(wid, fx);
                }
            },
        }
    }

    /// Module `id` lost its primary and its standby has already taken the state over
    /// (it watches the primary's pidfd): move the module's name, port names and
    /// parameters to it, and find it a new standby.
    pub(super) fn fail_over(&mut self, id: &str, fx: &mut impl Effects) {
        let now = fx.now();
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        let Some(new_primary) = m.standby_worker.take() else {
            return;
        };
        let ports = std::mem::take(&mut m.standby_ports);
        m.taken_over_by(new_primary, ports, now);
        self.counters.failovers += 1;
        if let Some(w) = self.workers.get_mut(&new_primary) {
            w.role = Role::Primary(id.to_string());
        }
        self.hand_over(id, fx);
        tracing::warn!("module {id} failed over to its standby");
        self.add_standby(id, fx);
    }

    /// Kills every primary that is hung: its state was last published more than
    /// [`HANG_PERIODS`] behind the server's last cycle, and it is stopped or has
    /// been inside one period since. Held against the server's cycles, not the wall
    /// clock, and against what the worker is doing, not only what it published: a
    /// worker the server does not call (a stalled graph, a starved machine) is not
    /// hung, and killing it would only add to the stall. One the server leaves out
    /// for [`ABANDONED_PERIODS`] while most modules play is killed anyway.
    pub(super) fn check_heartbeats(&mut self, fx: &mut impl Effects) {
        if self.shutting_down {
            return;
        }
        let Some((frame, period)) = fx.last_cycle() else {
            return;
        };
        let cycle = Cycle { frame, period };
        let now = fx.now();
        let playing: Vec<(&str, WorkerId, &str)> = self
            .modules
            .iter()
            .filter(|(_, m)| m.past_grace(now) && !self.failover.is_killed_as_hung(m.worker))
            .map(|(id, m)| (id.as_str(), m.worker, m.state.as_str()))
            .collect();
        let segments: Vec<&str> = playing.iter().map(|&(_, _, s)| s).collect();
        let published = fx.published_frames(&segments);
        let behind: Vec<(&str, WorkerId, &str, i32)> = playing
            .iter()
            .zip(published)
            .filter_map(|(&(id, wid, seg), frame)| {
                Some((id, wid, seg, cycle.periods_since(frame?)))
            })
            .filter(|&(.., periods)| periods > HANG_PERIODS as i32)
            .collect();
        let graph_runs = 2 * behind.len() < playing.len();
        let behind_workers: Vec<WorkerId> = behind.iter().map(|&(_, w, ..)| w).collect();
        self.failover.only_behind(&behind_workers);
        for (id, wid, segment, periods) in behind {
            let Some(w) = self.workers.get(&wid) else {
                continue;
            };
            let silence = fx.silence(segment, w.link.pid);
            match self
                .failover
                .judge(wid, periods, silence, cycle, graph_runs)
            {
                Verdict::Hung(why) => {
                    // A seat (a module that failed over into one) is killed with
                    // its host: every seat there dies, and each module that stood
                    // by in one gets a new standby.
                    tracing::warn!(
                        "module {id}: worker {} published nothing for {periods} periods ({why}): \
                         hung, killing it",
                        w.link.client,
                    );
                    fx.kill(&w.link);
                }
                Verdict::Waiting { first: true } => tracing::warn!(
                    "module {id}: worker {} published nothing for {periods} periods, \
                     waiting for the JACK server to call it: not killed (the server \
                     or the machine stalls)",
                    w.link.client
                ),
                Verdict::Waiting { first: false } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CYCLE: Cycle = Cycle {
        frame: 100 * 256,
        period: 256,
    };

    /// A worker this many periods behind: far enough to be judged.
    const BEHIND: i32 = HANG_PERIODS as i32 + 1;

    #[test]
    fn periods_are_counted_across_the_wrap_of_frame_times() {
        let cycle = Cycle {
            frame: 10,
            period: 256,
        };
        assert_eq!(cycle.periods_since(u32::MAX - 2 * 256), 2);
        assert_eq!(CYCLE.periods_since(CYCLE.frame - 255), 0, "whole periods");
        assert!(
            CYCLE.periods_since(CYCLE.frame + 256) < 0,
            "published since"
        );
    }

    #[test]
    fn a_stopped_worker_is_hung_and_not_judged_again_until_it_is_gone() {
        let mut f = Failover::default();
        let verdict = f.judge(3, BEHIND, Silence::Stopped, CYCLE, true);
        assert_eq!(verdict, Verdict::Hung("stopped".into()));
        assert!(f.is_killed_as_hung(3));
        f.departed(3);
        assert!(!f.is_killed_as_hung(3), "a new worker 3 is judged afresh");
    }

    #[test]
    fn a_worker_inside_one_period_is_hung_only_once_it_has_been_too_long() {
        let mut f = Failover::default();
        let began = |periods_ago: u32| CYCLE.frame - periods_ago * CYCLE.period;
        let short = Silence::InPeriod(began(HANG_PERIODS));
        assert_eq!(
            f.judge(1, BEHIND, short, CYCLE, true),
            Verdict::Waiting { first: true }
        );
        let long = Silence::InPeriod(began(HANG_PERIODS + 1));
        assert!(
            matches!(f.judge(1, BEHIND, long, CYCLE, true), Verdict::Hung(why) if why.contains("inside one period"))
        );
    }

    #[test]
    fn a_worker_waiting_to_be_called_is_killed_only_when_the_rest_plays_without_it_for_long() {
        let mut f = Failover::default();
        let abandoned = ABANDONED_PERIODS as i32 + 1;
        assert_eq!(
            f.judge(1, abandoned, Silence::Waiting, CYCLE, false),
            Verdict::Waiting { first: true },
            "the whole graph stalls: the server's trouble"
        );
        assert_eq!(
            f.judge(2, ABANDONED_PERIODS as i32, Silence::Waiting, CYCLE, true),
            Verdict::Waiting { first: true },
            "not long enough"
        );
        assert!(matches!(
            f.judge(2, abandoned, Silence::Waiting, CYCLE, true),
            Verdict::Hung(_)
        ));
        assert!(!f.is_killed_as_hung(1));
    }

    #[test]
    fn a_stall_is_logged_once_and_again_after_the_worker_caught_up() {
        let mut f = Failover::default();
        let judge = |f: &mut Failover| f.judge(1, BEHIND, Silence::Waiting, CYCLE, true);
        assert_eq!(judge(&mut f), Verdict::Waiting { first: true });
        f.only_behind(&[1, 2]);
        assert_eq!(judge(&mut f), Verdict::Waiting { first: false });
        f.only_behind(&[2]);
        assert_eq!(
            judge(&mut f),
            Verdict::Waiting { first: true },
            "a new stall"
        );
    }

    #[test]
    fn the_heartbeat_is_due_at_once_then_every_interval() {
        let mut f = Failover::default();
        let t0 = Instant::now();
        assert!(f.heartbeat_due(t0));
        assert_eq!(f.heartbeat_deadline(), Some(t0 + HEARTBEAT_INTERVAL));
        assert!(!f.heartbeat_due(t0 + HEARTBEAT_INTERVAL / 2));
        assert!(f.heartbeat_due(t0 + HEARTBEAT_INTERVAL));
    }

    #[test]
    fn a_create_gets_one_more_worker_and_a_later_create_its_own() {
        let mut f = Failover::default();
        assert!(f.retry_create("osc"));
        assert!(!f.retry_create("osc"), "its second worker died too");
        assert!(f.retry_create("osc"), "a new create of the same id");
        f.create_over("osc");
        assert!(f.retry_create("osc"), "done: the next create starts over");
    }

    #[test]
    fn spares_owed_follow_a_renamed_module_and_end_when_cancelled() {
        let mut f = Failover::default();
        f.owe_standby("b.osc");
        f.owe_replacement("b.osc", true);
        f.owe_replacement("amp", false);
        assert!(f.retry_create("b.osc"));
        f.rename_module("b.osc", "osc");
        assert_eq!(f.replacements_owed(), 2);
        assert_eq!(f.next_replacement(), Some(("amp".into(), false)));
        assert_eq!(f.next_replacement(), Some(("osc".into(), true)));
        assert!(!f.retry_create("osc"), "the retry came along");
        f.owe_standby("amp");
        f.cancel_standby("amp");
        assert_eq!(f.next_standby(), Some("osc".into()));
        assert_eq!(f.next_standby(), None);
        f.owe_replacement("amp", false);
        f.cancel_replacement("amp");
        assert_eq!(f.next_replacement(), None);
    }
}
