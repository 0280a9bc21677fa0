//! Deaths, hangs and what follows: hot-standby failover, a spare taking over,
//! fresh restarts and quarantine (as [`RestartPolicy`](crate::restart::RestartPolicy)
//! decides), standbys, and the heartbeat check.

use super::*;

impl Core {
    pub(super) fn handle_departure(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        let Some(worker) = self.workers.remove(&wid) else {
            return;
        };
        self.killed_as_hung.remove(&wid);
        self.pool.forget(wid);
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
        match worker.role {
            Role::Standby(id) => {
                // A standby's death only needs a new standby.
                if let Some(m) = self.modules.get_mut(&id) {
                    m.standby_worker = None;
                    m.standby_ports.clear();
                    m.degraded_since.get_or_insert(fx.now());
                }
                self.add_standby(&id, fx);
            }
            Role::Primary(id) => self.primary_died(&id, fx),
            _ => {}
        }
        self.refill(fx);
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
            self.retire(standby, fx);
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
            if self.create_retried.insert(id.clone()) {
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
                self.waiting.push_front((from, request, started));
                if self.pool.spares() > 0 {
                    self.serve_one(fx);
                }
            } else {
                self.create_retried.remove(&id);
                self.create_failed(from, &id, "its worker died while starting it, twice", fx);
            }
        }
    }

    /// Lets go of module `id`'s standby (it watches a dead primary, or maps a state
    /// that makes workers crash); the worker itself is fine and returns to the pool.
    pub(super) fn drop_standby(&mut self, id: &str, fx: &mut impl Effects) {
        self.needs_standby.remove(id);
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        m.standby_ports.clear();
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
            self.needs_replacement.insert(id.to_string(), fresh);
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
        self.needs_replacement.remove(id);
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

    /// Gives module `id` a hot standby from the pool: same type and ports, the state
    /// segment mapped, silent until its primary dies. Without a spare now, the next
    /// spare that arrives is used.
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
        let Some(wid) = self.pool.take() else {
            self.needs_standby.insert(id.to_string());
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
        let Some((cycle, period)) = fx.last_cycle() else {
            return;
        };
        let now = fx.now();
        let playing: Vec<(&str, WorkerId, &str)> = self
            .modules
            .iter()
            .filter(|(_, m)| {
                m.playing_since
                    .is_some_and(|t| now.duration_since(t) >= HEARTBEAT_GRACE)
                    && !self.killed_as_hung.contains(&m.worker)
            })
            .map(|(id, m)| (id.as_str(), m.worker, m.state.as_str()))
            .collect();
        let segments: Vec<&str> = playing.iter().map(|&(_, _, s)| s).collect();
        let published = fx.published_frames(&segments);
        let periods_since = |frame: u32| cycle.wrapping_sub(frame) as i32 / period.max(1) as i32;
        let behind: Vec<(&str, WorkerId, &str, i32)> = playing
            .iter()
            .zip(published)
            .filter_map(|(&(id, wid, seg), frame)| Some((id, wid, seg, periods_since(frame?))))
            .filter(|&(.., periods)| periods > HANG_PERIODS as i32)
            .collect();
        let graph_runs = 2 * behind.len() < playing.len();
        // Caught up since: a later stall is logged again.
        self.waiting_to_be_called
            .retain(|w| behind.iter().any(|&(_, b, ..)| b == *w));
        for (id, wid, segment, periods) in behind {
            let Some(w) = self.workers.get(&wid) else {
                continue;
            };
            let why = match fx.silence(segment, w.link.pid) {
                Silence::Stopped => "stopped".to_string(),
                Silence::InPeriod(since) if periods_since(since) > HANG_PERIODS as i32 => {
                    format!("inside one period for {}", periods_since(since))
                }
                Silence::Waiting if graph_runs && periods > ABANDONED_PERIODS as i32 => {
                    "not called by the server while the rest plays".to_string()
                }
                _ => {
                    if self.waiting_to_be_called.insert(wid) {
                        tracing::warn!(
                            "module {id}: worker {} published nothing for {periods} periods, \
                             waiting for the JACK server to call it: not killed (the server \
                             or the machine stalls)",
                            w.link.client
                        );
                    }
                    continue;
                }
            };
            tracing::warn!(
                "module {id}: worker {} published nothing for {periods} periods ({why}): \
                 hung, killing it",
                w.link.client,
            );
            fx.kill(&w.link);
            self.killed_as_hung.insert(wid);
        }
    }
}
