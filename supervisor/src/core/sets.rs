//! Set files: loading one as a diff against what plays, saving what plays.

use super::patching::PortOwner;
use super::*;
use modsynth_model::names;

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
                (replace && !in_set.contains(id.as_str())) || other_type
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.free_quietly(&id, fx);
        }
        let token = self.token();
        let mut creating = HashSet::new();
        for m in &set.modules {
            if self.modules.contains_key(&m.id) {
                for &(index, value) in &m.params {
                    self.set_value(&m.id, index, value, 0, None, fx);
                }
            } else {
                creating.insert(m.id.clone());
            }
        }
        for c in &set.connections {
            self.wanted.insert(Connection {
                from: c.from.clone(),
                to: c.to.clone(),
            });
        }
        let midi_in = self.midi_in_port();
        for input in &set.midi.inputs {
            self.wanted.insert(Connection {
                from: input.clone(),
                to: midi_in.clone(),
            });
        }
        // The set's maps replace the maps of the same parameters; with replace,
        // they are all the maps there are.
        if replace {
            self.midi.set_maps(Vec::new());
        }
        for map in set.maps {
            let _ = self.midi.map(map);
        }
        if !set.midi.program_sets.is_empty() {
            self.midi.set_program_sets(set.midi.program_sets);
        }
        self.midi_listening_changed(fx);
        self.requests.insert(
            token,
            Pending::Load {
                from,
                path: path.to_string(),
                creating: creating.clone(),
                failures: Vec::new(),
            },
        );
        for m in set.modules.into_iter().filter(|m| creating.contains(&m.id)) {
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
            ..
        }) = self.requests.remove(token)
        {
            self.make_wanted_connections(fx);
            if failures.is_empty() {
                self.answer(from, osc::done("/set/load", vec![osc::text(&path)]), fx);
            } else {
                let reason = format!("{path}: {}", failures.join("; "));
                self.answer(from, Fail::new("/set/load", reason).to_message(), fx);
            }
        }
    }

    /// Replies to `to`, or with no one asking (a program change), tells the
    /// `/notify` subscribers and the log.
    fn answer(&self, to: Option<ReplyTo>, msg: OscMessage, fx: &mut impl Effects) {
        match to {
            Some(to) => fx.reply(to, msg),
            None => {
                tracing::info!("{} {:?}", msg.addr, msg.args);
                self.notify(fx, msg);
            }
        }
    }

    /// Frees a module with no one to answer (a set load replacing it).
    pub(super) fn free_quietly(&mut self, id: &str, fx: &mut impl Effects) {
        if let Some(module) = self.modules.remove(id) {
            self.release_module(id, module, fx);
        }
    }

    /// `/set/save`: every module with its current parameters, and every connection
    /// that touches a module, whoever made it (qjackctl, jack_connect, modsynth), plus
    /// connections still waiting for their ports.
    pub(super) fn save_set(&mut self, from: ReplyTo, path: &str, fx: &mut impl Effects) {
        let set = self.current_set(fx);
        match fx.write_file(path, &set.to_toml()) {
            Ok(()) => fx.reply(from, osc::done("/set/save", vec![osc::text(path)])),
            Err(e) => fx.reply(from, Fail::new("/set/save", e).to_message()),
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
            self.wanted
                .iter()
                .filter(|c| c.to == midi_in)
                .map(|c| c.from.clone()),
        );
        let mut connections: std::collections::BTreeSet<Connection> = self
            .wanted
            .iter()
            .filter(|c| !names::is_worker_port(&c.from) && !names::is_worker_port(&c.to))
            .filter(|c| c.to != midi_in)
            .cloned()
            .collect();
        for (id, m) in &self.modules {
            for (real, spec) in m.ports.iter().zip(m.spec.ports) {
                let here = format!("{id}:{}", spec.name);
                for other in fx.connections(real) {
                    let other = match self.owner_of(&other) {
                        PortOwner::Primary { id, index } => match self.module_port(&id, index) {
                            Some(name) => name,
                            None => continue,
                        },
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
            .map(|(id, m)| setfile::SetModule {
                id: id.clone(),
                spec: m.spec,
                params: (0..m.spec.params.len()).map(|i| (i, m.params[i])).collect(),
                standby: m.standby,
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
