//! Modules: the table of modules and the creates waiting for a spare, and the
//! requests about one module (create, free, set, get).
//!
//! [`Modules`] owns the table and the wait queue and decides what only they tell
//! (whether an id is taken, what the limits allow, how many spares the modules
//! still want, which state segment a new module gets); the core's methods below
//! tie a module to its workers.

use super::*;
use crate::placement::Placement;

/// Every module known (playing, recovering or quarantined) by id, and the creates
/// waiting for a spare to become one.
#[derive(Default)]
pub(super) struct Modules {
    /// The modules by id.
    by_id: BTreeMap<String, Module>,
    /// Creates waiting for a spare (the pool was empty), oldest first, each with
    /// when it was asked.
    waiting: VecDeque<(Origin, Request, Instant)>,
}

impl Modules {
    /// Module `id`.
    pub fn get(&self, id: &str) -> Option<&Module> {
        self.by_id.get(id)
    }

    /// Module `id`, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Module> {
        self.by_id.get_mut(id)
    }

    /// Whether module `id` exists (a create waiting for a spare does not count).
    pub fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Adds module `id` (replacing one of that id).
    pub fn insert(&mut self, id: String, module: Module) {
        self.by_id.insert(id, module);
    }

    /// Takes module `id` out.
    pub fn remove(&mut self, id: &str) -> Option<Module> {
        self.by_id.remove(id)
    }

    /// The modules by id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Module)> {
        self.by_id.iter()
    }

    /// The modules' ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_id.keys()
    }

    /// The modules, in id order.
    pub fn values(&self) -> impl Iterator<Item = &Module> {
        self.by_id.values()
    }

    /// The modules, in id order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Module> {
        self.by_id.values_mut()
    }

    /// How many modules there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The module whose primary is worker `wid`.
    pub fn played_by(&self, wid: WorkerId) -> Option<&str> {
        self.by_id
            .iter()
            .find(|(_, m)| m.worker == wid)
            .map(|(id, _)| id.as_str())
    }

    /// The primary worker of the module whose standby is worker `wid`.
    pub fn primary_of_standby(&self, wid: WorkerId) -> Option<WorkerId> {
        self.by_id
            .values()
            .find(|m| m.standby_worker == Some(wid))
            .map(|m| m.worker)
    }

    /// Whether `id` is taken: by a module, or by a create waiting for a spare.
    pub fn is_taken(&self, id: &str) -> bool {
        self.by_id.contains_key(id) || self.is_waiting(id)
    }

    /// Whether the create of module `id` waits for a spare.
    pub fn is_waiting(&self, id: &str) -> bool {
        self.waiting
            .iter()
            .any(|(_, r, _)| matches!(r, Request::New { id: w, .. } if w == id))
    }

    /// `request` (a create asked at `since`) waits for a spare, after the others.
    pub fn wait(&mut self, from: Origin, request: Request, since: Instant) {
        self.waiting.push_back((from, request, since));
    }

    /// `request` waits for a spare before the others: its first worker died, and
    /// it has waited its turn already.
    pub fn wait_first(&mut self, from: Origin, request: Request, since: Instant) {
        self.waiting.push_front((from, request, since));
    }

    /// The create that has waited longest, taken out of the queue.
    pub fn next_waiting(&mut self) -> Option<(Origin, Request, Instant)> {
        self.waiting.pop_front()
    }

    /// Creates waiting for a spare.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The create that has waited longest, taken out of the queue if it has
    /// waited [`CREATE_WAIT_LIMIT`] by `now` (it is to fail).
    pub fn take_expired(&mut self, now: Instant) -> Option<(Origin, Request)> {
        let (_, _, since) = self.waiting.front()?;
        if now.duration_since(*since) < CREATE_WAIT_LIMIT {
            return None;
        }
        self.waiting
            .pop_front()
            .map(|(from, request, _)| (from, request))
    }

    /// Spares the modules will take, as far as known now: each waiting create one,
    /// two with a hot standby, and one for the standby of each module that has
    /// none yet (including those whose primary is still being assigned: a set
    /// load's standbys are known as soon as its creates are). Quarantined modules
    /// take none, and a standby that `placement` seats takes a seat instead (see
    /// [`Modules::seats_wanted`]).
    pub fn spares_wanted(&self, placement: Placement) -> usize {
        let creates: usize = self
            .waiting
            .iter()
            .map(|(_, r, _)| match r {
                Request::New {
                    standby: Standby::Hot,
                    spec,
                    ..
                } if !placement.seats_standby(is_lockstep(spec)) => 2,
                _ => 1,
            })
            .sum();
        let standbys = self
            .lacking_standby()
            .filter(|m| !placement.seats_standby(is_lockstep(m.spec)))
            .count();
        creates + standbys
    }

    /// Seats the modules will take, as far as known now: one for each hot
    /// standby, waiting or missing, that `placement` seats. (A module that plays
    /// in a seat wants a spare for its standby; it is counted here, a seat too
    /// many for a moment.)
    pub fn seats_wanted(&self, placement: Placement) -> usize {
        let creates = self
            .waiting
            .iter()
            .filter(|(_, r, _)| {
                matches!(r, Request::New { standby: Standby::Hot, spec, .. }
                    if placement.seats_standby(is_lockstep(spec)))
            })
            .count();
        let standbys = self
            .lacking_standby()
            .filter(|m| placement.seats_standby(is_lockstep(m.spec)))
            .count();
        creates + standbys
    }

    /// Modules that want a hot standby and have none (quarantined ones want none).
    fn lacking_standby(&self) -> impl Iterator<Item = &Module> {
        self.by_id
            .values()
            .filter(|m| m.standby == Standby::Hot && m.standby_worker.is_none() && !m.quarantined)
    }

    /// Whether one more module (with or without a standby) stays within
    /// `limits`, counting the waiting creates; the error starts with `limit:`.
    pub fn check_limits(&self, limits: Limits, standby: Standby) -> Result<(), String> {
        let clients_of = |s: Standby| if s == Standby::Hot { 2 } else { 1 };
        let waiting = self.waiting.iter().map(|(_, r, _)| match r {
            Request::New { standby, .. } => clients_of(*standby),
            _ => 0,
        });
        let modules = self.by_id.len() + self.waiting.len();
        let clients: usize = self
            .by_id
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

    /// The state segment of a new module `id` of instance `instance`:
    /// `/<instance>-<id>-state`, unless a module holds that name still (a prepared
    /// set's module keeps its segment when it takes its final id, and the same set
    /// may be prepared again): then with `.<n>` after the id (a digit after a `.`:
    /// no module id and no prepared id, `<set>.<id>` with `<id>` starting with a
    /// letter, ends like that).
    pub fn state_segment_for(&self, instance: &str, id: &str) -> String {
        let taken = |name: &str| self.by_id.values().any(|m| m.state == name);
        let plain = format!("/{instance}-{id}-state");
        if !taken(&plain) {
            return plain;
        }
        (2u32..)
            .map(|n| format!("/{instance}-{id}.{n}-state"))
            .find(|name| !taken(name))
            .unwrap_or(plain)
    }
}

/// Whether a module of type `spec` has a standby that plays in lockstep with its
/// primary (an LV2 plugin, whose state is the plugin's, not in shared memory).
fn is_lockstep(spec: &ModuleSpec) -> bool {
    spec.kind == catalog::Kind::Lv2
}

impl std::ops::Index<&str> for Modules {
    type Output = Module;

    /// Module `id`, which must exist.
    fn index(&self, id: &str) -> &Module {
        &self.by_id[id]
    }
}

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
        if self.modules.is_taken(&id) {
            self.create_failed(from, &id, &format!("a module '{id}' exists already"), fx);
            return;
        }
        if let Err(reason) = self.modules.check_limits(self.config.limits, standby) {
            self.create_failed(from, &id, &reason, fx);
            return;
        }
        let Some(wid) = self.pool.take() else {
            // An empty pool makes the create wait for the next spare, never fail.
            tracing::info!("pool empty: /module/new {id} waits for a spare");
            let request = Request::New {
                spec,
                id,
                params,
                standby,
            };
            self.modules.wait(from, request, started);
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
        let state = self.modules.state_segment_for(&self.config.instance, &id);
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
        if !m.past_grace(fx.now()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Origin {
        Origin::Client("127.0.0.1:9".parse().unwrap())
    }

    fn new(id: &str, standby: Standby) -> Request {
        Request::New {
            spec: catalog::module("vco").unwrap(),
            id: id.into(),
            params: Vec::new(),
            standby,
        }
    }

    /// A module `id` played by worker `worker`, its state segment `/ms-<id>-state`.
    fn module(id: &str, worker: WorkerId, standby: Standby) -> Module {
        let spec = catalog::module("vco").unwrap();
        let state = format!("/ms-{id}-state");
        Module::new(spec, worker, spec.defaults(), standby, state)
    }

    /// The id a waiting create asks for.
    fn id_of((_, request): (Origin, Request)) -> String {
        match request {
            Request::New { id, .. } => id,
            _ => unreachable!("only creates wait"),
        }
    }

    #[test]
    fn an_id_is_taken_by_a_module_or_a_create_waiting_for_a_spare() {
        let mut modules = Modules::default();
        modules.insert("osc".into(), module("osc", 1, Standby::Hot));
        modules.wait(client(), new("vcf", Standby::Hot), Instant::now());
        assert!(modules.is_taken("osc") && modules.is_taken("vcf"));
        assert!(!modules.contains_key("vcf"), "not a module yet");
        assert!(!modules.is_taken("amp"));
    }

    #[test]
    fn creates_wait_in_turn_a_retried_one_first_and_each_expires_alone() {
        let mut modules = Modules::default();
        let t0 = Instant::now();
        modules.wait(client(), new("a", Standby::Hot), t0);
        modules.wait(client(), new("b", Standby::Hot), t0 + CREATE_WAIT_LIMIT);
        modules.wait_first(client(), new("retried", Standby::Hot), t0);
        assert_eq!(modules.waiting(), 3);
        assert_eq!(
            modules.take_expired(t0 + CREATE_WAIT_LIMIT / 2).map(|_| ()),
            None
        );
        let later = t0 + CREATE_WAIT_LIMIT;
        assert_eq!(
            modules.take_expired(later).map(id_of),
            Some("retried".into())
        );
        assert_eq!(modules.take_expired(later).map(id_of), Some("a".into()));
        assert_eq!(
            modules.take_expired(later).map(|_| ()),
            None,
            "b has waited less"
        );
        let next = modules.next_waiting().map(|(from, r, _)| id_of((from, r)));
        assert_eq!(next, Some("b".into()));
        assert!(modules.next_waiting().is_none());
    }

    #[test]
    fn the_spares_wanted_count_waiting_creates_and_missing_standbys() {
        let mut modules = Modules::default();
        modules.wait(client(), new("hot", Standby::Hot), Instant::now());
        modules.wait(client(), new("cold", Standby::None), Instant::now());
        let mut served = module("served", 1, Standby::Hot);
        served.standby_worker = Some(2);
        modules.insert("served".into(), served);
        modules.insert("lacking".into(), module("lacking", 3, Standby::Hot));
        modules.insert("alone".into(), module("alone", 4, Standby::None));
        let mut quarantined = module("q", NO_WORKER, Standby::Hot);
        quarantined.quarantined = true;
        modules.insert("q".into(), quarantined);
        assert_eq!(modules.spares_wanted(Placement::default()), 2 + 1 + 1);
        assert_eq!(modules.seats_wanted(Placement::default()), 0);
        let seats = Placement { seats_per_host: 4 };
        assert_eq!(modules.spares_wanted(seats), 1 + 1, "standbys sit in seats");
        assert_eq!(modules.seats_wanted(seats), 1 + 1);
    }

    #[test]
    fn the_limits_count_waiting_creates_and_standbys() {
        let mut modules = Modules::default();
        let limits = Limits {
            max_modules: 3,
            jack_clients: 5,
        };
        modules.insert("a".into(), module("a", 1, Standby::Hot));
        modules.wait(client(), new("b", Standby::Hot), Instant::now());
        assert!(modules.check_limits(limits, Standby::None).is_ok());
        let clients = modules.check_limits(limits, Standby::Hot).unwrap_err();
        assert!(
            clients.starts_with("limit: modules use 4 JACK clients"),
            "{clients}"
        );
        modules.wait(client(), new("c", Standby::None), Instant::now());
        let count = modules.check_limits(limits, Standby::None).unwrap_err();
        assert!(count.starts_with("limit: 3 modules already"), "{count}");
    }

    #[test]
    fn a_state_segment_still_held_gives_the_new_module_a_numbered_one() {
        let mut modules = Modules::default();
        assert_eq!(modules.state_segment_for("ms", "osc"), "/ms-osc-state");
        // A prepared set's module took its final id and kept its segment.
        modules.insert("osc".into(), module("osc", 1, Standby::Hot));
        let mut second = module("b.osc", 2, Standby::Hot);
        second.state = "/ms-osc.2-state".into();
        modules.insert("b.osc".into(), second);
        assert_eq!(modules.state_segment_for("ms", "osc"), "/ms-osc.3-state");
        assert_eq!(
            modules.state_segment_for("other", "osc"),
            "/other-osc-state"
        );
    }

    #[test]
    fn a_worker_is_found_as_a_primary_or_as_a_standby() {
        let mut modules = Modules::default();
        let mut osc = module("osc", 1, Standby::Hot);
        osc.standby_worker = Some(2);
        modules.insert("osc".into(), osc);
        assert_eq!(modules.played_by(1), Some("osc"));
        assert_eq!(modules.played_by(2), None, "a standby plays nothing");
        assert_eq!(modules.primary_of_standby(2), Some(1));
        assert_eq!(modules.primary_of_standby(1), None);
    }
}
