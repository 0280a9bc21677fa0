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
        let Some(wid) = self.ready.pop_front() else {
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
            self.spawn_failures_in_a_row = self
                .spawn_failures_in_a_row
                .min(MAX_SPAWN_FAILURES_IN_A_ROW - 1);
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
        let state = format!("/{}-{id}-state", self.config.instance);
        let assign = ToWorker::Assign {
            token,
            id: id.clone(),
            module_type: spec.name.to_string(),
            params: params.iter().map(|&(i, v)| (i as u16, v)).collect(),
            role: WorkerRole::Primary,
            state: state.clone(),
        };
        let worker = self.workers.get_mut(&wid).expect("ready workers are known");
        worker.role = Role::Primary(id.clone());
        self.modules.insert(
            id.clone(),
            Module {
                spec,
                worker: wid,
                params: values,
                ports: Vec::new(),
                standby,
                state,
                standby_worker: None,
                standby_ports: Vec::new(),
                links: Default::default(),
                history: CrashHistory::default(),
                quarantined: false,
                recovering_since: None,
                degraded_since: None,
                playing_since: None,
            },
        );
        self.pending.insert(
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
        self.refill_soon(fx.now());
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
                self.pending.insert(token, Pending::Free { from, id });
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
        self.wanted.retain(|c| !own(&c.from) && !own(&c.to));
        self.needs_standby.remove(id);
        if let Some(standby) = module.standby_worker {
            self.free_worker(standby, fx);
        }
        self.needs_replacement.remove(id);
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
        let wid = module.worker;
        if let Some(m) = self.modules.get_mut(id) {
            m.params[index] = value;
        }
        if let Some(worker) = self.workers.get(&wid) {
            fx.send(
                &worker.link,
                ToWorker::SetParam {
                    index: index as u16,
                    value,
                    at,
                    received,
                },
            );
        }
    }

    pub(super) fn get(&mut self, from: ReplyTo, id: &str, name: &str, fx: &mut impl Effects) {
        let module = match self.module("/module/get", id) {
            Ok(m) => m,
            Err(reply) => return fx.reply(from, reply),
        };
        let Some(index) = module.spec.param_index(name) else {
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
    pub(super) fn create_failed(
        &mut self,
        from: Origin,
        id: &str,
        reason: &str,
        fx: &mut impl Effects,
    ) {
        match from {
            Origin::Client(to) => fx.reply(to, fail("/module/new", id, reason)),
            Origin::Load(token) => self.load_progress(token, id, Some(reason), fx),
        }
    }
}
