//! Creating, freeing and setting modules: the requests about one module.

use super::*;

impl Core {
    pub(super) fn create(
        &mut self,
        from: Origin,
        request: Request,
        started: Instant,
        fx: &mut impl Effects,
    ) {
        let Request::New {
            spec,
            id,
            params,
            standby,
        } = request
        else {
            return;
        };
        if self.modules.contains_key(&id) || self.is_waiting(&id) {
            self.create_failed(from, &id, &format!("a module '{id}' exists already"), fx);
            return;
        }
        if let Err(reason) = self.check_limits(standby) {
            self.create_failed(from, &id, &reason, fx);
            return;
        }
        let Some(wid) = self.pool.take() else {
            // An empty pool makes the create wait for the next spare, never fail.
            tracing::info!("pool empty: /module/new {id} waits for a spare");
            self.waiting.push_back((
                from,
                Request::New {
                    spec,
                    id,
                    params,
                    standby,
                },
                started,
            ));
            // After repeated failures the pool stopped refilling; a user's request is
            // worth one more try (and fails with the reason if that fails too).
            self.pool.try_again();
            self.refill(fx);
            return;
        };
        let cold = fx.now().duration_since(started) > Duration::from_millis(1);
        let token = self.token();
        let mut values = spec.defaults();
        for &(i, v) in &params {
            values[i] = v;
        }
        // Every module's state lives in shared memory, with or without a standby: a
        // replacement (a standby, or a spare after a crash) continues from it.
        let state = self.state_segment_for(&id);
        let plugin_state = self.plugin_states.take(&id);
        let assign = ToWorker::Assign {
            token,
            id: id.clone(),
            module_type: spec.name.to_string(),
            params: params.iter().map(|&(i, v)| (i as u16, v)).collect(),
            role: WorkerRole::Primary,
            state: state.clone(),
            plugin_state: plugin_state.clone(),
        };
        let worker = self.workers.get_mut(&wid).expect("ready workers are known");
        worker.role = Role::Primary(id.clone());
        let mut module = Module::new(spec, wid, values, standby, state);
        module.plugin_state = plugin_state;
        self.modules.insert(id.clone(), module);
        let muted = self.starts_muted(&id);
        self.requests.insert(
            token,
            Pending::Create {
                from,
                id,
                started,
                cold,
            },
        );
        let link = &self.workers[&wid].link;
        if !fx.send(link, assign) {
            // Its death arrives as WorkerGone, which fails the create.
            tracing::warn!("worker {} is gone before its assignment", link.client);
        }
        if muted {
            self.close_gate(wid, fx);
        }
        self.pool.refill_soon(fx.now());
    }

    /// The state segment of a new module `id`: `/<instance>-<id>-state`, unless a
    /// module holds that name still (a prepared set's module keeps its segment when
    /// it takes its final id, and the same set may be prepared again): then with
    /// `.<n>` after the id (a digit after a `.`: no module id and no prepared id,
    /// `<set>.<id>` with `<id>` starting with a letter, ends like that).
    fn state_segment_for(&self, id: &str) -> String {
        let instance = &self.config.instance;
        let taken = |name: &str| self.modules.values().any(|m| m.state == name);
        let plain = format!("/{instance}-{id}-state");
        if !taken(&plain) {
            return plain;
        }
        (2u32..)
            .map(|n| format!("/{instance}-{id}.{n}-state"))
            .find(|name| !taken(name))
            .unwrap_or(plain)
    }

    pub(super) fn is_waiting(&self, id: &str) -> bool {
        self.waiting
            .iter()
            .any(|(_, r, _)| matches!(r, Request::New { id: w, .. } if w == id))
    }

    pub(super) fn free(&mut self, from: ReplyTo, id: String, fx: &mut impl Effects) {
        let Some(module) = self.modules.remove(&id) else {
            fx.reply(
                from,
                fail("/module/free", &id, &format!("no module '{id}'")),
            );
            return;
        };
        match self.release_module(&id, module, fx) {
            Some(token) => {
                self.requests.insert(token, Pending::Free { from, id });
            }
            None => fx.reply(from, osc::done("/module/free", vec![osc::text(&id)])),
        }
    }

    /// Lets go of a module that was removed from `modules`: its connections are no
    /// longer wanted, its primary and standby are freed (back to the pool), and its
    /// state segment is unlinked. Returns the token of the primary's Free.
    pub(super) fn release_module(
        &mut self,
        id: &str,
        module: Module,
        fx: &mut impl Effects,
    ) -> Option<u64> {
        let prefix = format!("{id}:");
        // Connections made by the workers' real port names (`modsynth-w03:out_1`)
        // go too: those ports outlive the module as a spare's, and the next module
        // on that worker must start unpatched.
        let own = |name: &str| {
            name.starts_with(&prefix)
                || module.ports.iter().any(|p| p == name)
                || module.standby_ports.iter().any(|p| p == name)
        };
        self.patch.forget_ends(own);
        self.midi.forget_module(id);
        self.failover.cancel_standby(id);
        if let Some(standby) = module.standby_worker {
            self.free_worker(standby, fx);
        }
        self.failover.cancel_replacement(id);
        if !module.quarantined {
            fx.unlink_state(&module.state);
        }
        self.free_worker(module.worker, fx)
    }

    /// Tells a worker to stop playing its module; it becomes a spare (or retires)
    /// when it answers. Returns the token of that answer.
    pub(super) fn free_worker(&mut self, wid: WorkerId, fx: &mut impl Effects) -> Option<u64> {
        let token = self.token();
        let worker = self.workers.get_mut(&wid)?;
        worker.role = Role::Freeing;
        fx.send(&worker.link, ToWorker::Free { token });
        Some(token)
    }

    pub(super) fn module(&self, address: &str, id: &str) -> Result<&Module, OscMessage> {
        self.modules
            .get(id)
            .ok_or_else(|| Fail::new(address, format!("no module '{id}'")).to_message())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn set(
        &mut self,
        from: ReplyTo,
        id: &str,
        name: &str,
        value: &Arg,
        received: u32,
        at: Option<u32>,
        fx: &mut impl Effects,
    ) {
        let module = match self.module("/module/set", id) {
            Ok(m) => m,
            Err(reply) => return fx.reply(from, reply),
        };
        let (index, value) = match param::validate(module.spec, name, value.as_value()) {
            Ok(v) => v,
            Err(e) => return fx.reply(from, Fail::new("/module/set", e.to_string()).to_message()),
        };
        self.set_value(id, index, value, received, at, fx);
    }

    /// Sets parameter `index` of module `id` to a checked `value` and sends it to
    /// the module's worker (or holds it back while the worker is stalled).
    pub(super) fn set_value(
        &mut self,
        id: &str,
        index: usize,
        value: f32,
        received: u32,
        at: Option<u32>,
        fx: &mut impl Effects,
    ) {
        let Some(module) = self.modules.get(id) else {
            return;
        };
        let wid = module.worker;
        let stalled = self.stalled(id, fx);
        let progress = self
            .modules
            .get(id)
            .and_then(|m| fx.published_frame(&m.state));
        if let Some(m) = self.modules.get_mut(id) {
            m.params[index] = value;
            // A new period published: the worker is taking changes again.
            if progress.is_some_and(|f| Some(f) != m.last_frame) {
                m.last_frame = progress;
                m.sent_since_frame = 0;
            }
            let over_budget = at.is_none() && m.sent_since_frame >= SEND_BUDGET;
            if stalled || over_budget {
                // Its worker is not taking them (stopped, or a flood faster than
                // it plays): its ipc socket would fill and the next send block
                // this thread. Keep the latest value; it goes out once the
                // worker has played a period (or to its replacement).
                if m.held & (1 << index) != 0 {
                    self.counters.params_held_back += 1;
                }
                m.held |= 1 << index;
                m.held_values[index] = value;
                return;
            }
            m.sent_since_frame += 1;
            if at.is_none() && m.held & (1 << index) != 0 {
                // This newer value replaces the one still held.
                m.held &= !(1 << index);
                self.counters.params_held_back += 1;
            }
        }
        let change = ToWorker::SetParam {
            index: index as u16,
            value,
            at,
            received,
        };
        // A plugin's standby plays in lockstep (its state is the plugin's, not in
        // shared memory): it gets every change its primary gets.
        let lockstep = self
            .modules
            .get(id)
            .filter(|m| m.spec.kind == catalog::Kind::Lv2)
            .and_then(|m| m.standby_worker);
        if let Some(standby) = lockstep.and_then(|w| self.workers.get(&w)) {
            fx.send(&standby.link, change.clone());
        }
        if let Some(worker) = self.workers.get(&wid) {
            fx.send(&worker.link, change);
        }
    }

    /// Whether module `id`'s primary has published nothing for [`STALL_PERIODS`]
    /// (stopped, hung, or far too slow), past its first moments.
    fn stalled(&self, id: &str, fx: &mut impl Effects) -> bool {
        let Some(m) = self.modules.get(id) else {
            return false;
        };
        let now = fx.now();
        if m.playing_since
            .is_none_or(|t| now.duration_since(t) < HEARTBEAT_GRACE)
        {
            return false;
        }
        let (Some((cycle, period)), Some(frame)) = (fx.last_cycle(), fx.published_frame(&m.state))
        else {
            return false;
        };
        cycle.wrapping_sub(frame) as i32 > (STALL_PERIODS * period.max(1)) as i32
    }

    /// Sends the values held back from modules whose worker plays again (has
    /// published a period since); with `now`, from every module whose worker is
    /// not stalled (a `/sync` covers them).
    pub(super) fn send_held(&mut self, now: bool, fx: &mut impl Effects) {
        let held: Vec<String> = self
            .modules
            .iter()
            .filter(|(_, m)| m.held != 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in held {
            if self.stalled(&id, fx) {
                continue;
            }
            let progress = self
                .modules
                .get(&id)
                .and_then(|m| fx.published_frame(&m.state));
            if let Some(m) = self.modules.get_mut(&id) {
                if !now && progress.is_some() && progress == m.last_frame {
                    continue; // nothing played since the budget ran out
                }
                m.last_frame = progress;
                m.sent_since_frame = 0;
            }
            let received = fx.last_cycle().map_or(0, |(c, _)| c);
            let Some(m) = self.modules.get_mut(&id) else {
                continue;
            };
            let (bits, wid) = (std::mem::take(&mut m.held), m.worker);
            let values: Vec<(u16, f32)> = (0..MAX_PARAMS)
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| (i as u16, m.held_values[i]))
                .collect();
            let lockstep = self
                .modules
                .get(&id)
                .filter(|m| m.spec.kind == catalog::Kind::Lv2)
                .and_then(|m| m.standby_worker);
            let to = [Some(wid), lockstep];
            for worker in to.iter().flatten().filter_map(|w| self.workers.get(w)) {
                for &(index, value) in &values {
                    fx.send(
                        &worker.link,
                        ToWorker::SetParam {
                            index,
                            value,
                            at: None,
                            received,
                        },
                    );
                }
            }
        }
    }

    pub(super) fn get(&mut self, from: ReplyTo, id: &str, name: &str, fx: &mut impl Effects) {
        let module = match self.module("/module/get", id) {
            Ok(m) => m,
            Err(reply) => return fx.reply(from, reply),
        };
        let Some(index) = module.spec.param_index(name) else {
            // An LV2 plugin's control output (a meter): read where its primary
            // writes it every period.
            let output = module
                .spec
                .lv2_uri()
                .and_then(|uri| {
                    modsynth_lv2::spec::control_outputs(uri)
                        .iter()
                        .position(|o| o == name)
                })
                .map(|i| (i, module.state.clone()));
            if let Some((i, segment)) = output {
                let reply = match fx.control_output(&segment, i) {
                    Some(v) => osc::message(
                        "/module/value",
                        vec![osc::text(id), osc::text(name), OscType::Float(v)],
                    ),
                    None => Fail::new(
                        "/module/get",
                        format!("{id}.{name}: cannot read the plugin's output now (its worker is being replaced?): try again"),
                    )
                    .to_message(),
                };
                return fx.reply(from, reply);
            }
            let e = param::ParamError::UnknownParam {
                module: module.spec.name,
                param: name.to_string(),
            };
            return fx.reply(from, Fail::new("/module/get", e.to_string()).to_message());
        };
        let spec = &module.spec.params[index];
        let value = module.params[index];
        let value = if spec.is_enum() {
            osc::text(spec.values[value as usize])
        } else {
            OscType::Float(value)
        };
        fx.reply(
            from,
            osc::message("/module/value", vec![osc::text(id), osc::text(name), value]),
        );
    }

    /// Answers a failed create, to a client or to the set load it belongs to.
    /// Whether one more module (with or without a standby) stays within
    /// [`Limits`]; the error starts with `limit:`.
    fn check_limits(&self, standby: Standby) -> Result<(), String> {
        let limits = self.config.limits;
        let clients_of = |s: Standby| if s == Standby::Hot { 2 } else { 1 };
        let waiting = self.waiting.iter().map(|(_, r, _)| match r {
            Request::New { standby, .. } => clients_of(*standby),
            _ => 0,
        });
        let modules = self.modules.len() + self.waiting.len();
        let clients: usize = self
            .modules
            .values()
            .map(|m| clients_of(m.standby))
            .chain(waiting)
            .sum();
        if modules >= limits.max_modules {
            Err(format!(
                "limit: {modules} modules already, at most {} (modsynthd --max-modules)",
                limits.max_modules
            ))
        } else if clients + clients_of(standby) > limits.jack_clients {
            Err(format!(
                "limit: modules use {clients} JACK clients already, at most {} \
                 (create it with standby none, or free a module)",
                limits.jack_clients
            ))
        } else {
            Ok(())
        }
    }

    pub(super) fn create_failed(
        &mut self,
        from: Origin,
        id: &str,
        reason: &str,
        fx: &mut impl Effects,
    ) {
        self.failover.create_over(id);
        self.plugin_states.take(id);
        match from {
            Origin::Client(to) => fx.reply(to, fail("/module/new", id, reason)),
            Origin::Load(token) => self.load_progress(token, id, Some(reason), fx),
        }
    }
}
