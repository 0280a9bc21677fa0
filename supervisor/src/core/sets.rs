//! Set files: loading one as a diff against what plays, saving what plays.

use super::patching::PortOwner;
use super::*;
use modsynth_model::names;

/// What an atomic load does only once every create succeeded.
pub(super) struct Deferred {
    /// Modules to free (`replace`: not in the file).
    stale: Vec<String>,
    /// New parameter values for modules that run already: (id, index, value).
    params: Vec<(String, usize, f32)>,
    /// The file's connections, and its MIDI inputs' connections to `midi_in`.
    connections: Vec<Connection>,
    /// The file's CC maps (with replace: all the maps there are).
    maps: Vec<modsynth_model::ccmap::CcMap>,
    replace: bool,
    /// The file's program sets, if it has any.
    program_sets: Option<std::collections::BTreeMap<u8, String>>,
    /// The modules the load creates.
    created: Vec<String>,
}

impl Core {
    /// `/set/load`: checks the whole file, then applies it as a diff against what
    /// runs: new modules are created, existing ones get the file's parameter values,
    /// connections are made (or kept pending until their ports exist).
    /// `from` is `None` for a load a program change asked for: its answer goes to
    /// the `/notify` subscribers.
    pub(super) fn load_set(
        &mut self,
        from: Option<ReplyTo>,
        path: &str,
        replace: bool,
        atomic: bool,
        fx: &mut impl Effects,
    ) {
        let set = match fx
            .read_file(path)
            .and_then(|text| setfile::parse(path, &text).map_err(|e| e.to_string()))
        {
            Ok(set) => set,
            Err(e) => return self.answer(from, Fail::new("/set/load", e).to_message(), fx),
        };
        // A module of the same id but another type cannot be changed into it: refuse
        // before doing anything, so a bad file changes nothing.
        for m in &set.modules {
            if let Some(running) = self.modules.get(&m.id) {
                if running.spec.name != m.spec.name && atomic {
                    let reason = format!("{path}: module '{}' runs as a {} but the set has a {}: an atomic load cannot swap it (free it first)", m.id, running.spec.name, m.spec.name);
                    return self.answer(from, Fail::new("/set/load", reason).to_message(), fx);
                }
                if running.spec.name != m.spec.name && !replace {
                    let reason = format!("{path}: module '{}' runs as a {} but the set has a {} (load with replace to swap it)", m.id, running.spec.name, m.spec.name);
                    return self.answer(from, Fail::new("/set/load", reason).to_message(), fx);
                }
            }
        }
        let in_set: HashSet<&str> = set.modules.iter().map(|m| m.id.as_str()).collect();
        let stale: Vec<String> = self
            .modules
            .iter()
            .filter(|(id, m)| {
                let other_type = set
                    .modules
                    .iter()
                    .any(|s| &s.id == *id && s.spec.name != m.spec.name);
                // A prepared set is not what plays: a replace leaves it for its switch.
                let playing = !self.is_prepared(id);
                playing && ((replace && !in_set.contains(id.as_str())) || other_type)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let midi_in = self.midi_in_port();
        let mut connections = set.connections.clone();
        connections.extend(set.midi.inputs.iter().map(|input| Connection {
            from: input.clone(),
            to: midi_in.clone(),
        }));
        let mut deferred = Deferred {
            stale,
            params: Vec::new(),
            connections,
            maps: set.maps.clone(),
            replace,
            program_sets: (!set.midi.program_sets.is_empty())
                .then(|| set.midi.program_sets.clone()),
            created: Vec::new(),
        };
        let token = self.token();
        let mut creating = HashSet::new();
        for m in &set.modules {
            if self.modules.contains_key(&m.id) && !deferred.stale.contains(&m.id) {
                for &(index, value) in &m.params {
                    deferred.params.push((m.id.clone(), index, value));
                }
            } else {
                creating.insert(m.id.clone());
                deferred.created.push(m.id.clone());
            }
        }
        let then = if atomic {
            AfterLoad::Atomic(Box::new(deferred))
        } else {
            self.apply_deferred(deferred, fx);
            AfterLoad::Answer
        };
        self.requests.insert(
            token,
            Pending::Load {
                from,
                path: path.to_string(),
                creating: creating.clone(),
                failures: Vec::new(),
                then,
            },
        );
        for m in set.modules.into_iter().filter(|m| creating.contains(&m.id)) {
            if let Some(state) = m.plugin_state {
                self.plugin_states.bring(&m.id, state);
            }
            let request = Request::New {
                spec: m.spec,
                id: m.id,
                params: m.params,
                standby: m.standby,
            };
            self.create(Origin::Load(token), request, fx.now(), fx);
        }
        self.make_wanted_connections(fx);
        self.load_progress(token, "", None, fx);
    }

    /// One create of a set load finished (`id` empty: just check for completion).
    pub(super) fn load_progress(
        &mut self,
        token: u64,
        id: &str,
        failure: Option<&str>,
        fx: &mut impl Effects,
    ) {
        let Some(Pending::Load {
            creating, failures, ..
        }) = self.requests.get_mut(token)
        else {
            return;
        };
        creating.remove(id);
        if let Some(reason) = failure {
            failures.push(format!("{id}: {reason}"));
        }
        if !creating.is_empty() {
            return;
        }
        if let Some(Pending::Load {
            from,
            path,
            failures,
            then,
            ..
        }) = self.requests.remove(token)
        {
            match then {
                AfterLoad::Answer => {}
                AfterLoad::Prepare(name) => {
                    return self.prepared(from, &name, &failures, fx);
                }
                AfterLoad::Atomic(deferred) if failures.is_empty() => {
                    self.apply_deferred(*deferred, fx)
                }
                AfterLoad::Atomic(deferred) => {
                    for id in &deferred.created {
                        self.free_quietly(id, fx);
                    }
                    let reason = format!("{path}: {}; nothing was changed", failures.join("; "));
                    return self.answer(from, Fail::new("/set/load", reason).to_message(), fx);
                }
            }
            self.make_wanted_connections(fx);
            // Answered once its connections are made (or failed, logged).
            if failures.is_empty() {
                let done = osc::done("/set/load", vec![osc::text(&path)]);
                self.answer_after_patches(from, done, fx);
            } else {
                let reason = format!("{path}: {}", failures.join("; "));
                self.answer_after_patches(from, Fail::new("/set/load", reason).to_message(), fx);
            }
        }
    }

    /// Replies to `to`, or with no one asking (a program change), tells the
    /// `/notify` subscribers and the log.
    pub(super) fn answer(&self, to: Option<ReplyTo>, msg: OscMessage, fx: &mut impl Effects) {
        match to {
            Some(to) => fx.reply(to, msg),
            None => {
                tracing::info!("{} {:?}", msg.addr, msg.args);
                self.notify(fx, msg);
            }
        }
    }

    /// The part of a set load that changes what runs already: frees the modules
    /// the set replaces, sets the parameters of those it keeps, wants its
    /// connections and takes its MIDI maps and program sets (at once, or once an
    /// atomic load's creates all succeeded).
    fn apply_deferred(&mut self, deferred: Deferred, fx: &mut impl Effects) {
        for id in &deferred.stale {
            self.free_quietly(id, fx);
        }
        for (id, index, value) in &deferred.params {
            self.set_value(id, *index, *value, 0, None, fx);
        }
        for c in deferred.connections {
            self.patch.want(c);
        }
        // The set's maps replace the maps of the same parameters; with replace,
        // they are all the maps there are.
        if deferred.replace {
            self.midi.set_maps(Vec::new());
        }
        for map in deferred.maps {
            let _ = self.midi.map(map);
        }
        if let Some(program_sets) = deferred.program_sets {
            self.midi.set_program_sets(program_sets);
        }
        self.midi_listening_changed(fx);
        self.make_wanted_connections(fx);
    }

    /// Whether port name `end` (`module:port`) is a prepared module's.
    fn touches_prepared(&self, end: &str) -> bool {
        end.split_once(':')
            .is_some_and(|(m, _)| self.is_prepared(m))
    }

    /// Frees a module with no one to answer (a set load replacing it).
    pub(super) fn free_quietly(&mut self, id: &str, fx: &mut impl Effects) {
        if let Some(module) = self.modules.remove(id) {
            self.release_module(id, module, fx);
        }
    }

    /// The running patch as a set: the connections of the modules' primaries, by
    /// module names (`osc1:out`) and foreign JACK names, each once. Never a worker's
    /// name: the links of standbys are mirrors of the patch, not part of it, and a
    /// worker's name would patch whatever that worker plays in the next `modsynthd`.
    pub fn current_set(&self, fx: &mut impl Effects) -> setfile::SetFile {
        // Connections to `midi_in` are saved as [midi] inputs: the port's name
        // holds the instance's, which the next modsynthd may not share.
        let midi_in = self.midi_in_port();
        let mut inputs: std::collections::BTreeSet<String> =
            fx.connections(&midi_in).into_iter().collect();
        inputs.extend(
            self.patch
                .wanted()
                .iter()
                .filter(|c| c.to == midi_in)
                .map(|c| c.from.clone()),
        );
        let mut connections: std::collections::BTreeSet<Connection> = self
            .patch
            .wanted()
            .iter()
            .filter(|c| !names::is_worker_port(&c.from) && !names::is_worker_port(&c.to))
            .filter(|c| c.to != midi_in)
            .filter(|c| !self.touches_prepared(&c.from) && !self.touches_prepared(&c.to))
            .cloned()
            .collect();
        // A prepared set is not part of the patch until its switch.
        for (id, m) in self.modules.iter().filter(|(id, _)| !self.is_prepared(id)) {
            for (real, spec) in m.ports.iter().zip(m.spec.ports) {
                let here = format!("{id}:{}", spec.name);
                for other in fx.connections(real) {
                    let other = match self.owner_of(&other) {
                        PortOwner::Primary { id, .. } if self.is_prepared(&id) => continue,
                        PortOwner::Primary { id, index } => {
                            match self.modules.module_port(&id, index) {
                                Some(name) => name,
                                None => continue,
                            }
                        }
                        PortOwner::Standby { .. } => continue, // a mirror
                        PortOwner::Spare | PortOwner::Worker => {
                            tracing::warn!("not saving {here} <-> {other}: a worker's port that plays no module of this set");
                            continue;
                        }
                        PortOwner::Foreign => other,
                    };
                    let c = match spec.direction {
                        catalog::Direction::Out => Connection {
                            from: here.clone(),
                            to: other,
                        },
                        catalog::Direction::In => Connection {
                            from: other,
                            to: here.clone(),
                        },
                    };
                    connections.insert(c);
                }
            }
        }
        let modules = self
            .modules
            .iter()
            .filter(|(id, _)| !self.is_prepared(id))
            .map(|(id, m)| setfile::SetModule {
                id: id.clone(),
                spec: m.spec,
                params: (0..m.spec.params.len()).map(|i| (i, m.params[i])).collect(),
                standby: m.standby,
                plugin_state: m.plugin_state.clone(),
            })
            .collect();
        setfile::SetFile {
            jack: Default::default(),
            modules,
            connections: connections.into_iter().collect(),
            maps: self.midi.maps().to_vec(),
            midi: setfile::MidiSettings {
                inputs: inputs.into_iter().collect(),
                program_sets: self.midi.program_sets().clone(),
            },
        }
    }
}
