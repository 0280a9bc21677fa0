//! Playing a set list: a set prepared silently beside the one that plays, then
//! switched to on one frame.
//!
//! `/set/prepare` creates the set's modules under prepared ids (`<name>.<id>`: `.`
//! is never in a module id, so they cannot collide with what plays), makes the
//! connections among them, and closes the output gate of every module that feeds
//! something outside the set. Nothing is connected to the outside yet.
//!
//! `/set/switch` connects the prepared set to the outside (still silent: its gates
//! are closed), then has every worker move its gate on the same JACK frame: the
//! modules that play close theirs, the prepared ones open theirs (a crossfade of
//! `fade_ms`). A JACK connect lands on a period boundary some time after it is
//! asked for; a gate moves on the sample. Once that frame and the fade have
//! passed, the outgoing modules are freed (their connections go with them) and
//! the prepared ones take their final ids.

use super::*;
use patching::renamed_end;

/// A prepared set, waiting for its switch.
pub(super) struct Prepared {
    /// (final id, prepared id), file order.
    modules: Vec<(String, String)>,
    /// Connections that touch something outside the set, made at the switch (set
    /// modules by their prepared ids).
    outside: Vec<Connection>,
    /// Prepared ids whose output gate stays closed until the switch: those with an
    /// output going outside the set.
    muted: HashSet<String>,
    /// Still creating its modules.
    building: bool,
}

/// A prepared set as the state dir keeps it (in [`Saved`]), so that a supervisor
/// that adopts this one's workers can still switch to it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedPrepared {
    /// Its name (`/set/prepare file name`).
    pub name: String,
    /// (final id, prepared id), file order.
    pub modules: Vec<(String, String)>,
    /// Connections to make at the switch, as `(from, to)`.
    pub outside: Vec<(String, String)>,
    /// Prepared ids whose gates open at the switch.
    pub muted: Vec<String>,
    /// Whether its creates were still under way.
    pub building: bool,
}

/// A switch under way: the gates are scheduled, the old set not yet freed.
pub(super) struct Switch {
    from: ReplyTo,
    name: String,
    /// The JACK frame the gates move on.
    frame: u32,
    fade: Duration,
    /// The modules that played before the switch.
    outgoing: Vec<String>,
    /// (final id, prepared id).
    incoming: Vec<(String, String)>,
    /// Prepared ids of the incoming modules whose gates open on `frame`.
    opening: HashSet<String>,
    /// When the server's cycles were first seen past `frame`.
    passed_at: Option<Instant>,
    /// When the core looks again.
    next_check: Instant,
}

/// A `/set/switch ... bar N` waiting for the playing seq's position.
pub(super) struct BarSwitch {
    token: u64,
    from: ReplyTo,
    name: String,
    fade_ms: u32,
    on: OnBar,
    /// The seq's id and pattern length.
    seq: String,
    steps: u32,
    /// When its worker's answer is given up on.
    pub due: Instant,
}

/// How long a seq's worker may take to say where it is: it reads a copy of its
/// state off its audio thread, a few ms at most.
const POSITION_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a switch under way is checked: its frame passing, then its fade.
const SWITCH_CHECK: Duration = Duration::from_millis(5);

/// Periods ahead of the last cycle a switch "now" is scheduled: every worker's gate
/// change must reach its audio thread before that frame, or the sets would move a
/// period apart (the incoming one late: silence; early: both at once).
const SWITCH_LEAD_PERIODS: u32 = 3;

/// The prepared id of module `id` of prepared set `name`.
pub(super) fn prepared_id(name: &str, id: &str) -> String {
    format!("{name}.{id}")
}

impl Core {
    /// `/set/prepare path name`.
    pub(super) fn prepare_set(
        &mut self,
        from: ReplyTo,
        path: &str,
        name: &str,
        fx: &mut impl Effects,
    ) {
        let set = match fx
            .read_file(path)
            .and_then(|text| setfile::parse(path, &text).map_err(|e| e.to_string()))
        {
            Ok(set) => set,
            Err(e) => return fx.reply(from, Fail::new("/set/prepare", e).to_message()),
        };
        if self.switching.as_ref().is_some_and(|s| s.name == name) {
            let reason = format!(
                "set '{name}' is being switched to: prepare it again after its /done /set/switch"
            );
            return fx.reply(from, Fail::new("/set/prepare", reason).to_message());
        }
        // Preparing a name again replaces what was prepared under it.
        if let Some(old) = self.prepared.remove(name) {
            for (_, pid) in old.modules {
                self.free_quietly(&pid, fx);
            }
        }
        let ids: HashSet<&str> = set.modules.iter().map(|m| m.id.as_str()).collect();
        // `x:port` of a module of the set -> its prepared name; anything else as is.
        let inside = |end: &str| -> Option<String> {
            let (module, port) = end.split_once(':')?;
            ids.contains(module)
                .then(|| format!("{}:{port}", prepared_id(name, module)))
        };
        let mut prepared = Prepared {
            modules: set
                .modules
                .iter()
                .map(|m| (m.id.clone(), prepared_id(name, &m.id)))
                .collect(),
            outside: Vec::new(),
            muted: HashSet::new(),
            building: true,
        };
        for c in &set.connections {
            match (inside(&c.from), inside(&c.to)) {
                (Some(from), Some(to)) => {
                    self.patch.want(Connection { from, to });
                }
                (from_inside, to_inside) => {
                    if let Some(module) = from_inside
                        .as_deref()
                        .and_then(|f| f.split_once(':'))
                        .map(|(m, _)| m.to_string())
                    {
                        prepared.muted.insert(module);
                    }
                    prepared.outside.push(Connection {
                        from: from_inside.unwrap_or_else(|| c.from.clone()),
                        to: to_inside.unwrap_or_else(|| c.to.clone()),
                    });
                }
            }
        }
        let token = self.token();
        let creating: HashSet<String> = prepared.modules.iter().map(|(_, p)| p.clone()).collect();
        self.prepared.insert(name.to_string(), prepared);
        self.requests.insert(
            token,
            Pending::Load {
                from: Some(from),
                path: path.to_string(),
                creating,
                failures: Vec::new(),
                then: AfterLoad::Prepare(name.to_string()),
            },
        );
        for m in set.modules {
            if let Some(state) = m.plugin_state {
                self.plugin_states.bring(&prepared_id(name, &m.id), state);
            }
            let request = Request::New {
                spec: m.spec,
                id: prepared_id(name, &m.id),
                params: m.params,
                standby: m.standby,
            };
            self.create(Origin::Load(token), request, fx.now(), fx);
        }
        self.make_wanted_connections(fx);
        self.load_progress(token, "", None, fx);
    }

    /// Every create of prepared set `name` is done: ready for its switch, or gone
    /// again if anything failed (a half set is no set to switch to).
    pub(super) fn prepared(
        &mut self,
        from: Option<ReplyTo>,
        name: &str,
        failures: &[String],
        fx: &mut impl Effects,
    ) {
        if failures.is_empty() {
            if let Some(p) = self.prepared.get_mut(name) {
                p.building = false;
            }
            let done = osc::done("/set/prepare", vec![osc::text(name)]);
            return self.answer_after_patches(from, done, fx);
        }
        if let Some(p) = self.prepared.remove(name) {
            for (_, pid) in p.modules {
                self.free_quietly(&pid, fx);
            }
        }
        let reason = format!("{name}: {}; nothing was prepared", failures.join("; "));
        self.answer(from, Fail::new("/set/prepare", reason).to_message(), fx);
    }

    /// The prepared sets, for [`Saved`].
    pub(super) fn saved_prepared(&self) -> Vec<SavedPrepared> {
        self.prepared
            .iter()
            .map(|(name, p)| {
                let mut muted: Vec<String> = p.muted.iter().cloned().collect();
                muted.sort();
                SavedPrepared {
                    name: name.clone(),
                    modules: p.modules.clone(),
                    outside: p
                        .outside
                        .iter()
                        .map(|c| (c.from.clone(), c.to.clone()))
                        .collect(),
                    muted,
                    building: p.building,
                }
            })
            .collect()
    }

    /// Takes back the prepared sets the last supervisor left (after its modules
    /// were adopted): a whole set is prepared again, ready for its switch (its
    /// workers kept their closed gates); a set that was still being built or lost
    /// a module while no supervisor ran is no set to switch to, and what came back
    /// of it is freed.
    pub(super) fn adopt_prepared(&mut self, saved: Vec<SavedPrepared>, fx: &mut impl Effects) {
        for set in saved {
            let whole = !set.building
                && set
                    .modules
                    .iter()
                    .all(|(_, pid)| self.modules.contains_key(pid));
            if !whole {
                tracing::warn!(
                    "prepared set '{}' was incomplete when modsynthd restarted: freed; prepare it again",
                    set.name
                );
                for (_, pid) in &set.modules {
                    self.free_quietly(pid, fx);
                }
                continue;
            }
            tracing::info!(
                "prepared set '{}' taken back, ready for its switch",
                set.name
            );
            self.prepared.insert(
                set.name,
                Prepared {
                    modules: set.modules,
                    outside: set
                        .outside
                        .into_iter()
                        .map(|(from, to)| Connection { from, to })
                        .collect(),
                    muted: set.muted.into_iter().collect(),
                    building: false,
                },
            );
        }
    }

    /// Whether module `id` (a prepared one) keeps its gate closed until a switch.
    pub(super) fn starts_muted(&self, id: &str) -> bool {
        self.prepared.values().any(|p| p.muted.contains(id))
    }

    /// Gives a worker that now plays (or stands by for) module `id` the gate its
    /// module's set has: closed while the set is prepared; during a switch, what
    /// the others got (closed now and open on the switch's frame for an incoming
    /// module, closing on that frame for an outgoing one), so a spare that replaces
    /// a crashed module in the switch window neither sounds early nor plays on
    /// after its set is gone.
    pub(super) fn mute_if_prepared(&self, id: &str, wid: WorkerId, fx: &mut impl Effects) {
        if self.starts_muted(id) {
            self.close_gate(wid, fx);
            return;
        }
        let Some(s) = &self.switching else {
            return;
        };
        let Some(w) = self.workers.get(&wid) else {
            return;
        };
        let fade_ms = u32::try_from(s.fade.as_millis()).unwrap_or(u32::MAX);
        let on_frame = |gain: f32| ToWorker::Gate {
            gain,
            at: Some(s.frame),
            fade_ms,
        };
        if s.opening.contains(id) && s.passed_at.is_none() {
            self.close_gate(wid, fx);
            fx.send(&w.link, on_frame(1.0));
        } else if s.outgoing.iter().any(|o| o == id) {
            // A frame already passed lands on the worker's first period: closed.
            fx.send(&w.link, on_frame(0.0));
        }
    }

    /// Closes a worker's output gate at once (its module was just assigned).
    pub(super) fn close_gate(&self, wid: WorkerId, fx: &mut impl Effects) {
        if let Some(w) = self.workers.get(&wid) {
            let gate = ToWorker::Gate {
                gain: 0.0,
                at: None,
                fade_ms: 0,
            };
            fx.send(&w.link, gate);
        }
    }

    /// Whether module `id` belongs to a prepared set (or one being switched to
    /// that has not taken its final ids yet): not part of what plays.
    pub(super) fn is_prepared(&self, id: &str) -> bool {
        let of = |modules: &[(String, String)]| modules.iter().any(|(_, pid)| pid == id);
        self.prepared.values().any(|p| of(&p.modules))
            || self.switching.as_ref().is_some_and(|s| of(&s.incoming))
    }

    /// The names of the prepared sets, for `/status` and error messages.
    pub fn prepared_sets(&self) -> Vec<(String, bool)> {
        self.prepared
            .iter()
            .map(|(name, p)| (name.clone(), !p.building))
            .collect()
    }

    /// `/set/switch name fade_ms [bar N]`, at JACK frame `at` (a bundle's
    /// timetag), on the first frame of bar `on_bar` of the playing seq, or now.
    pub(super) fn switch_set(
        &mut self,
        from: ReplyTo,
        name: &str,
        fade_ms: u32,
        on_bar: Option<OnBar>,
        at: Option<u32>,
        fx: &mut impl Effects,
    ) {
        let refusal = match (&self.switching, self.prepared.get(name)) {
            (Some(s), _) => Some(format!(
                "the switch to '{}' is under way: switch again after its /done",
                s.name
            )),
            (None, None) if self.prepared.is_empty() => Some(format!(
                "no prepared set '{name}' (none is: modsynth set prepare FILE --as NAME)"
            )),
            (None, None) => Some(format!(
                "no prepared set '{name}' (prepared: {})",
                self.prepared.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            (None, Some(p)) if p.building => Some(format!(
                "set '{name}' is still being prepared: switch once /set/prepare answered"
            )),
            (None, Some(_)) => None,
        };
        if let Some(reason) = refusal {
            return fx.reply(from, Fail::new("/set/switch", reason).to_message());
        }
        let Some((cycle, period)) = fx.last_cycle() else {
            let reason = "the JACK server runs no cycles: cannot place the switch on a frame";
            return fx.reply(from, Fail::new("/set/switch", reason).to_message());
        };
        let frame = match (at, on_bar) {
            (Some(_), Some(_)) => {
                let reason = "give a timetag or a bar, not both";
                return fx.reply(from, Fail::new("/set/switch", reason).to_message());
            }
            (Some(at), None) => at,
            (None, None) => cycle.wrapping_add(SWITCH_LEAD_PERIODS * period.max(1)),
            // Placed once the seq's worker says where it is (`seq_position_arrived`).
            (None, Some(on)) => return self.ask_seq_position(from, name, fade_ms, on, fx),
        };
        let Some(p) = self.prepared.remove(name) else {
            return;
        };
        let other_prepared: HashSet<&String> = self
            .prepared
            .values()
            .flat_map(|p| p.modules.iter().map(|(_, pid)| pid))
            .collect();
        let outgoing: Vec<String> = self
            .modules
            .keys()
            .filter(|id| {
                !other_prepared.contains(id) && !p.modules.iter().any(|(_, pid)| pid == *id)
            })
            .cloned()
            .collect();
        // The incoming set's ports meet the outside now, silent behind closed gates.
        for c in &p.outside {
            self.patch.want(c.clone());
        }
        self.make_wanted_connections(fx);
        let gate = |gain: f32| ToWorker::Gate {
            gain,
            at: Some(frame),
            fade_ms,
        };
        let workers_of = |id: &str| -> Vec<WorkerId> {
            self.modules
                .get(id)
                .map(|m| std::iter::once(m.worker).chain(m.standby_worker).collect())
                .unwrap_or_default()
        };
        let mut sends = Vec::new();
        for id in &outgoing {
            for w in workers_of(id) {
                sends.push((w, gate(0.0)));
            }
        }
        for (_, pid) in &p.modules {
            if p.muted.contains(pid) {
                for w in workers_of(pid) {
                    sends.push((w, gate(1.0)));
                }
            }
        }
        for (wid, msg) in sends {
            if let Some(w) = self.workers.get(&wid) {
                fx.send(&w.link, msg);
            }
        }
        tracing::info!(
            "switching to set '{name}' at frame {frame} ({} modules out, {} in)",
            outgoing.len(),
            p.modules.len()
        );
        let now = fx.now();
        self.switching = Some(Switch {
            from,
            name: name.to_string(),
            frame,
            fade: Duration::from_millis(u64::from(fade_ms)),
            outgoing,
            incoming: p.modules,
            opening: p.muted,
            passed_at: None,
            next_check: now,
        });
        self.follow_switch(fx);
    }

    /// Asks the playing seq's worker where it is, for a switch on bar `on`.
    fn ask_seq_position(
        &mut self,
        from: ReplyTo,
        name: &str,
        fade_ms: u32,
        on: OnBar,
        fx: &mut impl Effects,
    ) {
        let fail = |reason: String| Fail::new("/set/switch", reason).to_message();
        if let Some(p) = &self.placing {
            let reason = format!(
                "the switch to '{}' is being placed on a bar: switch again after its /done",
                p.name
            );
            return fx.reply(from, fail(reason));
        }
        let (seq, wid, steps) = match self.playing_seq() {
            Ok(found) => found,
            Err(e) => return fx.reply(from, fail(e)),
        };
        let token = self.token();
        let sent = self
            .workers
            .get(&wid)
            .is_some_and(|w| fx.send(&w.link, ToWorker::SeqPosition { token }));
        if !sent {
            return fx.reply(
                from,
                fail(format!("{seq}'s worker is gone: try again in a moment")),
            );
        }
        self.placing = Some(BarSwitch {
            token,
            from,
            name: name.to_string(),
            fade_ms,
            on,
            seq,
            steps,
            due: fx.now() + POSITION_TIMEOUT,
        });
    }

    /// The seq's worker said where it is: the switch is placed on its bar.
    pub(super) fn seq_position_arrived(
        &mut self,
        token: u64,
        position: Option<modsynth_model::protocol::SeqPosition>,
        fx: &mut impl Effects,
    ) {
        if self.placing.as_ref().is_none_or(|p| p.token != token) {
            return;
        }
        let Some(p) = self.placing.take() else {
            return;
        };
        let fail = |reason: String| Fail::new("/set/switch", reason).to_message();
        let Some(position) = position else {
            return fx.reply(
                p.from,
                fail(format!(
                    "{}'s position cannot be read from its state",
                    p.seq
                )),
            );
        };
        let Some((cycle, period)) = fx.last_cycle() else {
            let reason = "the JACK server runs no cycles: cannot place the switch on a frame";
            return fx.reply(p.from, fail(reason.into()));
        };
        let soonest = cycle.wrapping_add(SWITCH_LEAD_PERIODS * period.max(1));
        match bars::bar_frame(&position, p.on, p.steps, soonest) {
            Ok((frame, bar)) => {
                tracing::info!(
                    "switch to '{}' on bar {bar} of {}: frame {frame}",
                    p.name,
                    p.seq
                );
                self.switch_set(p.from, &p.name, p.fade_ms, None, Some(frame), fx);
            }
            Err(e) => fx.reply(p.from, fail(format!("{}: {e}", p.seq))),
        }
    }

    /// Fails a switch on a bar whose seq's worker did not answer in time.
    pub(super) fn expire_bar_switch(&mut self, fx: &mut impl Effects) {
        if self.placing.as_ref().is_some_and(|p| fx.now() >= p.due) {
            if let Some(p) = self.placing.take() {
                let reason = format!(
                    "{}'s worker did not say where it is within {} s: try again",
                    p.seq,
                    POSITION_TIMEOUT.as_secs()
                );
                fx.reply(p.from, Fail::new("/set/switch", reason).to_message());
            }
        }
    }

    /// Finishes a switch whose frame and fade have passed: frees the outgoing set
    /// and gives the incoming modules their final ids.
    ///
    /// The freed workers are all kept as spares (`switch_reserve`), for the set
    /// list's next prepare. Retiring the surplus at once made jackd2 1.9.21 hang:
    /// after 3 to 6 switches of 16-module sets from a pool of 8, new workers never
    /// finished opening their JACK clients and modsynthd stopped answering; with
    /// the renames left out, or no workers retired and started, 14 switches in a
    /// row ran clean. (Worker exits and starts during the renames' burst of
    /// pretty-name changes; not understood further.)
    pub(super) fn follow_switch(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        let cycle = fx.last_cycle();
        let Some(s) = self.switching.as_mut() else {
            return;
        };
        if now < s.next_check {
            return;
        }
        s.next_check = now + SWITCH_CHECK;
        if s.passed_at.is_none() {
            // The period holding the frame is over once a cycle starts a period on.
            if let Some((cycle, period)) = cycle {
                if cycle.wrapping_sub(s.frame) as i32 >= period as i32 {
                    s.passed_at = Some(now);
                }
            }
        }
        if s.passed_at.is_none_or(|t| now < t + s.fade) {
            return;
        }
        let Some(s) = self.switching.take() else {
            return;
        };
        // The freed workers stay warm for the next prepare (see `worker_freed`).
        self.switch_reserve = s
            .outgoing
            .iter()
            .filter_map(|id| self.modules.get(id))
            .map(|m| 1 + usize::from(m.standby_worker.is_some()))
            .sum();
        for id in &s.outgoing {
            self.free_quietly(id, fx);
        }
        for (id, pid) in &s.incoming {
            self.rename_module(pid, id, fx);
        }
        self.make_wanted_connections(fx);
        let args = vec![osc::text(&s.name), OscType::Int(s.frame as i32)];
        fx.reply(s.from, osc::done("/set/switch", args));
    }

    /// When a switch under way is looked at next.
    pub(super) fn switch_deadline(&self) -> Option<Instant> {
        self.switching.as_ref().map(|s| s.next_check)
    }

    /// Module `old` is called `new` from now on: in the supervisor's records, the
    /// patch, and on its workers' ports.
    fn rename_module(&mut self, old: &str, new: &str, fx: &mut impl Effects) {
        let Some(mut m) = self.modules.remove(old) else {
            return;
        };
        self.patch.rename_module(old, new);
        let relink = |links: &std::collections::BTreeSet<(usize, String)>| {
            links
                .iter()
                .map(|(i, e)| (*i, renamed_end(e, old, new)))
                .collect()
        };
        m.links = relink(&m.links);
        for other in self.modules.values_mut() {
            other.links = relink(&other.links);
        }
        for w in self.workers.values_mut() {
            match &mut w.role {
                Role::Primary(id) | Role::Standby(id) if id == old => *id = new.to_string(),
                _ => {}
            }
        }
        self.failover.rename_module(old, new);
        self.requests.rename_module(old, new);
        for wid in std::iter::once(m.worker).chain(m.standby_worker) {
            if let Some(w) = self.workers.get(&wid) {
                fx.send(
                    &w.link,
                    ToWorker::Rename {
                        id: new.to_string(),
                    },
                );
            }
        }
        self.modules.insert(new.to_string(), m);
    }
}
