use super::*;
use modsynth_protocol::osc::decode;
use rosc::OscType as T;

// Re-adoption decisions, in a file of their own.
mod adoption;
// Bursts of creates: set loads, replaces, failing worker starts.
mod bursts;
// Prepared sets, switches, atomic loads.
mod switch;
// Standby hosts: seats, a host's death, the hand-back from a seat.
mod seats;

/// Records what the core did; ports listed in `ports` exist.
#[derive(Default)]
struct Fake {
    replies: Vec<(ReplyTo, OscMessage)>,
    sent: Vec<(WorkerId, ToWorker)>,
    spawned: Vec<WorkerId>,
    /// Standby hosts started, with their seats.
    hosts_spawned: Vec<(WorkerId, u16)>,
    killed: Vec<WorkerId>,
    patched: Vec<(bool, String, String)>,
    ports: HashSet<String>,
    /// Workers whose channel is gone.
    dead: HashSet<WorkerId>,
    files: HashMap<String, String>,
    /// The fake clock; tests move it forward.
    clock: Option<Instant>,
    unlinked: Vec<String>,
    port_ids: HashMap<u32, String>,
    /// The server's last cycle, and each state segment's published frame.
    cycle: Option<u32>,
    published: HashMap<String, u32>,
    /// What each segment's owner does while it publishes nothing (default: waits).
    silences: HashMap<String, Silence>,
    /// What arrives at `midi_in` next.
    midi: Vec<super::midi::MidiIn>,
    /// Connection changes are left under way (a JACK server that does not
    /// answer) instead of made at once: kept here, answered by the test.
    patches_wait: bool,
    under_way: Vec<PatchJob>,
}

impl Effects for Fake {
    fn read_midi(&mut self) -> Vec<super::midi::MidiIn> {
        std::mem::take(&mut self.midi)
    }
    fn reply(&mut self, to: ReplyTo, msg: OscMessage) {
        self.replies.push((to, msg));
    }
    fn send(&mut self, w: &WorkerLink, msg: ToWorker) -> bool {
        self.sent.push((w.id, msg));
        !self.dead.contains(&w.id)
    }
    fn spawn(&mut self, id: WorkerId) {
        self.spawned.push(id);
    }
    fn spawn_host(&mut self, id: WorkerId, seats: u16) {
        self.hosts_spawned.push((id, seats));
    }
    fn kill(&mut self, w: &WorkerLink) {
        self.killed.push(w.id);
    }
    fn patch(&mut self, job: &PatchJob) -> Option<Result<(), String>> {
        if self.patches_wait {
            self.under_way.push(job.clone());
            return None;
        }
        self.patched
            .push((job.connect, job.src.clone(), job.dst.clone()));
        Some(Ok(()))
    }
    fn port_exists(&mut self, name: &str) -> bool {
        self.ports.contains(name)
    }
    fn connections(&mut self, port: &str) -> Vec<String> {
        self.patched
            .iter()
            .filter(|(c, s, _)| *c && s == port)
            .map(|(_, _, d)| d.clone())
            .chain(
                self.patched
                    .iter()
                    .filter(|(c, _, d)| *c && d == port)
                    .map(|(_, s, _)| s.clone()),
            )
            .collect()
    }
    fn unlink_state(&mut self, name: &str) {
        self.unlinked.push(name.to_string());
    }
    fn port_name(&mut self, id: u32) -> Option<String> {
        self.port_ids.get(&id).cloned()
    }
    fn read_file(&mut self, path: &str) -> Result<String, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| format!("{path}: cannot read it: no such file"))
    }
    fn write_file(&mut self, path: &str, contents: &str) -> Result<(), String> {
        self.files.insert(path.to_string(), contents.to_string());
        Ok(())
    }
    fn now(&self) -> Instant {
        self.clock.unwrap_or_else(Instant::now)
    }
    fn last_cycle(&mut self) -> Option<(u32, u32)> {
        self.cycle.map(|c| (c, 256))
    }
    fn published_frames(&mut self, segments: &[&str]) -> Vec<Option<u32>> {
        segments
            .iter()
            .map(|s| self.published.get(*s).copied())
            .collect()
    }
    fn published_frame(&mut self, segment: &str) -> Option<u32> {
        self.published.get(segment).copied()
    }
    fn silence(&mut self, segment: &str, _pid: u32) -> Silence {
        self.silences
            .get(segment)
            .copied()
            .unwrap_or(Silence::Waiting)
    }
}

/// Moves the fake clock past the refill delay and lets the core act on it.
fn after_refill_delay(core: &mut Core, fx: &mut Fake) {
    fx.clock = Some(fx.now() + REFILL_DELAY);
    core.tick(fx);
}

fn client() -> ReplyTo {
    "127.0.0.1:9000".parse().unwrap()
}

fn osc(core: &mut Core, fx: &mut Fake, addr: &str, args: Vec<T>) {
    let request = decode(&osc::message(addr, args));
    core.handle(
        Event::Osc {
            from: client(),
            request,
            received: 1000,
            at: None,
        },
        fx,
    );
}

fn ready(core: &mut Core, fx: &mut Fake, id: WorkerId) {
    host_ready(core, fx, id, 0);
}

/// Worker `id` says hello with `seats` seats (0: an ordinary worker, more: a
/// standby host).
fn host_ready(core: &mut Core, fx: &mut Fake, id: WorkerId, seats: u16) {
    let (commands, _rx) = ipc_channel::ipc::channel().unwrap();
    std::mem::forget(_rx);
    let new = NewWorker {
        id,
        pid: 100 + id,
        client: format!("ms-w{id:02}"),
        commands,
        spawn_time: Duration::from_millis(20),
        seats,
    };
    core.handle(Event::Spawned(new), fx);
}

/// A core with a pool of `n` and standbys placed by `placement`, started: its
/// first workers are spawning.
fn started_placing(n: usize, placement: crate::placement::Placement) -> (Core, Fake) {
    let mut core = Core::new(Config {
        pool: n,
        instance: "ms".into(),
        restart: RestartPolicy::default(),
        limits: Default::default(),
        placement,
    });
    let mut fx = Fake::default();
    core.start(&mut fx);
    (core, fx)
}

/// A core whose pool of `n` is ready.
fn started(n: usize) -> (Core, Fake) {
    let (mut core, mut fx) = started_placing(n, Default::default());
    let mut next = 0;
    while next < fx.spawned.len() {
        let id = fx.spawned[next];
        ready(&mut core, &mut fx, id);
        next += 1;
    }
    (core, fx)
}

fn last_reply(fx: &Fake) -> (String, Vec<T>) {
    let (_, m) = fx.replies.last().expect("a reply");
    (m.addr.clone(), m.args.clone())
}

fn s(v: &str) -> T {
    T::String(v.into())
}

/// Creates `id` of `ty` without a standby and acknowledges the assignment.
fn create(core: &mut Core, fx: &mut Fake, ty: &str, id: &str) -> WorkerId {
    create_with(core, fx, ty, id, "none")
}

/// Creates `id` with `standby` (`hot` or `none`); acknowledges the primary only.
fn create_with(core: &mut Core, fx: &mut Fake, ty: &str, id: &str, standby: &str) -> WorkerId {
    osc(
        core,
        fx,
        "/module/new",
        vec![s(ty), s(id), s("standby"), s(standby)],
    );
    let (wid, token) = fx
        .sent
        .iter()
        .rev()
        .find_map(|(w, m)| match m {
            ToWorker::Assign { token, id: i, .. } if i == id => Some((*w, *token)),
            _ => None,
        })
        .expect("an Assign");
    let spec = catalog::module(ty).unwrap();
    ack_assign(core, fx, wid, token, spec);
    wid
}

/// Creates `id` of `ty` with a hot standby and acknowledges both assignments;
/// returns (primary, standby).
fn create_with_standby(core: &mut Core, fx: &mut Fake, ty: &str, id: &str) -> (WorkerId, WorkerId) {
    let primary = create_with(core, fx, ty, id, "hot");
    let (standby, token, _, _) = last_assign(fx, id);
    ack_assign(core, fx, standby, token, catalog::module(ty).unwrap());
    (primary, standby)
}

/// The worker `wid` says it took its module over, `gap` frames after its predecessor.
fn took_over(core: &mut Core, fx: &mut Fake, wid: WorkerId, gap: u32) {
    let msg = FromWorker::TookOver {
        silent_frames: Some(gap),
    };
    core.handle(Event::FromWorker(wid, msg), fx);
}

/// Whether subscribers were sent `addr args`.
fn notified(fx: &Fake, addr: &str, args: &[T]) -> bool {
    fx.replies
        .iter()
        .any(|(_, m)| m.addr == addr && m.args == args)
}

/// Answers an Assign as a worker would: its ports now exist.
fn ack_assign(core: &mut Core, fx: &mut Fake, wid: WorkerId, token: u64, spec: &ModuleSpec) {
    let ports: Vec<String> = spec
        .ports
        .iter()
        .map(|p| format!("ms-w{wid:02}:{}", p.name))
        .collect();
    fx.ports.extend(ports.iter().cloned());
    core.handle(
        Event::FromWorker(
            wid,
            FromWorker::Assigned {
                token,
                result: Ok(ports),
            },
        ),
        fx,
    );
}

#[test]
fn the_pool_fills_to_its_size_at_start_a_few_workers_at_a_time() {
    let mut core = Core::new(Config {
        pool: 4,
        instance: "ms".into(),
        restart: RestartPolicy::default(),
        limits: Default::default(),
        placement: Default::default(),
    });
    let mut fx = Fake::default();
    core.start(&mut fx);
    assert_eq!(fx.spawned.len(), MAX_CONCURRENT_SPAWNS);
    let (core, fx) = started(4);
    assert_eq!(fx.spawned, vec![0, 1, 2, 3]);
    assert_eq!(core.spares_ready(), 4);
}

#[test]
fn repeated_spawn_failures_stop_the_refill_instead_of_spinning() {
    let mut core = Core::new(Config {
        pool: 4,
        instance: "ms".into(),
        restart: RestartPolicy::default(),
        limits: Default::default(),
        placement: Default::default(),
    });
    let mut fx = Fake::default();
    core.start(&mut fx);
    let mut i = 0;
    while i < fx.spawned.len() {
        let id = fx.spawned[i];
        core.handle(
            Event::SpawnFailed {
                id,
                reason: "broken".into(),
            },
            &mut fx,
        );
        i += 1;
    }
    assert!(fx.spawned.len() <= MAX_SPAWN_FAILURES_IN_A_ROW as usize + MAX_CONCURRENT_SPAWNS);
    let before = fx.spawned.len();
    osc(&mut core, &mut fx, "/module/new", vec![s("vco"), s("v")]);
    assert!(fx.spawned.len() > before, "a create tries once more");
    assert!(fx.replies.is_empty());
    let retried: Vec<WorkerId> = fx.spawned[before..].to_vec();
    for id in retried {
        core.handle(
            Event::SpawnFailed {
                id,
                reason: "broken".into(),
            },
            &mut fx,
        );
    }
    assert!(matches!(&last_reply(&fx).1[2], T::String(r) if r.contains("broken")));
}

#[test]
fn creating_takes_a_spare_replies_done_and_refills_the_pool() {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "vco", "vco1");
    assert_eq!(wid, 0);
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/module/new"), s("vco1")])
    );
    assert_eq!(
        fx.spawned,
        vec![0, 1],
        "the refill waits until the create is done"
    );
    assert!(core.next_deadline().is_some());
    after_refill_delay(&mut core, &mut fx);
    assert_eq!(fx.spawned, vec![0, 1, 2], "a replacement spare was started");
    assert_eq!(core.status_report().modules[0].jack_client, "ms-w00");
}

#[test]
fn an_empty_pool_makes_a_create_wait_for_the_next_spare_not_fail() {
    let mut core = Core::new(Config {
        pool: 1,
        instance: "ms".into(),
        restart: RestartPolicy::default(),
        limits: Default::default(),
        placement: Default::default(),
    });
    let mut fx = Fake::default();
    core.start(&mut fx);
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("l1")]);
    assert!(fx.replies.is_empty(), "no reply before a worker exists");
    assert!(
        fx.spawned.len() >= 2,
        "the waiting create asks for a worker of its own"
    );
    ready(&mut core, &mut fx, 0);
    assert!(matches!(&fx.sent[0], (0, ToWorker::Assign { id, .. }) if id == "l1"));
    assert_eq!(core.counters.cold_creates, 1);
}

#[test]
fn a_duplicate_id_fails_and_changes_nothing() {
    let (mut core, mut fx) = started(2);
    create(&mut core, &mut fx, "vco", "a");
    let sent = fx.sent.len();
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("a")]);
    let (addr, args) = last_reply(&fx);
    assert_eq!(
        (addr.as_str(), &args[..2]),
        ("/fail", &[s("/module/new"), s("a")][..])
    );
    assert_eq!(fx.sent.len(), sent);
    assert_eq!(core.status_report().modules.len(), 1);
}

#[test]
fn set_checks_the_param_against_the_module_type_before_sending() {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "vcf", "f");
    let sent = fx.sent.len();
    for (param, value) in [
        ("freq", T::Float(1.0)),
        ("cutoff", T::Float(1e9)),
        ("mode", s("notch")),
    ] {
        osc(
            &mut core,
            &mut fx,
            "/module/set",
            vec![s("f"), s(param), value],
        );
        assert_eq!(last_reply(&fx).0, "/fail", "{param} was accepted");
    }
    osc(
        &mut core,
        &mut fx,
        "/module/set",
        vec![s("nobody"), s("cutoff"), T::Float(100.0)],
    );
    assert!(matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("no module 'nobody'")));
    assert_eq!(fx.sent.len(), sent, "nothing reached the worker");
    osc(&mut core, &mut fx, "/f/cutoff", vec![T::Int(300)]);
    assert_eq!(
        fx.sent.last().unwrap(),
        &(
            wid,
            ToWorker::SetParam {
                index: 1,
                value: 300.0,
                at: None,
                received: 1000
            }
        )
    );
    osc(&mut core, &mut fx, "/module/get", vec![s("f"), s("cutoff")]);
    assert_eq!(
        last_reply(&fx),
        (
            "/module/value".into(),
            vec![s("f"), s("cutoff"), T::Float(300.0)]
        )
    );
}

#[test]
fn a_timetagged_set_carries_its_frame_to_the_worker() {
    let (mut core, mut fx) = started(1);
    create(&mut core, &mut fx, "const", "c");
    let request = decode(&osc::message(
        "/module/set",
        vec![s("c"), s("value"), T::Float(1.0)],
    ));
    core.handle(
        Event::Osc {
            from: client(),
            request,
            received: 5,
            at: Some(48_000),
        },
        &mut fx,
    );
    assert!(matches!(
        fx.sent.last().unwrap().1,
        ToWorker::SetParam {
            at: Some(48_000),
            received: 5,
            ..
        }
    ));
}

#[test]
fn connect_resolves_module_ports_and_passes_jack_names_through() {
    let (mut core, mut fx) = started(2);
    let a = create(&mut core, &mut fx, "vco", "osc");
    fx.ports.insert("system:playback_1".into());
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("osc:out"), s("system:playback_1")],
    );
    assert_eq!(
        fx.patched,
        vec![(true, format!("ms-w{a:02}:out"), "system:playback_1".into())]
    );
    assert_eq!(last_reply(&fx).0, "/done");
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("osc:nope"), s("system:playback_1")],
    );
    assert!(matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("it has: pitch, fm, out")));
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("osc:out"), s("ghost:in")],
    );
    assert!(matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("no port 'ghost:in'")));
    assert_eq!(fx.patched.len(), 1);
}

#[test]
fn sync_answers_once_every_playing_worker_has_synced() {
    let (mut core, mut fx) = started(3);
    let a = create(&mut core, &mut fx, "vco", "a");
    let b = create(&mut core, &mut fx, "vco", "b");
    osc(&mut core, &mut fx, "/sync", vec![T::Int(42)]);
    let tokens: Vec<(WorkerId, u64)> = fx
        .sent
        .iter()
        .filter_map(|(w, m)| match m {
            ToWorker::Sync { token } => Some((*w, *token)),
            _ => None,
        })
        .collect();
    assert_eq!(tokens.iter().map(|t| t.0).collect::<Vec<_>>(), vec![a, b]);
    core.handle(
        Event::FromWorker(a, FromWorker::Synced { token: tokens[0].1 }),
        &mut fx,
    );
    assert_ne!(last_reply(&fx).0, "/synced");
    // b dies instead of answering: the sync still completes.
    core.handle(Event::WorkerGone(b), &mut fx);
    assert!(fx
        .replies
        .iter()
        .any(|(_, m)| m.addr == "/synced" && m.args == vec![T::Int(42)]));
}

#[test]
fn a_dead_primary_without_a_standby_is_taken_over_by_a_spare_from_its_state() {
    let (mut core, mut fx) = started(2);
    osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
    let wid = create(&mut core, &mut fx, "noise", "n");
    // Someone ran `jack_connect n:out system:playback_1`.
    fx.port_ids.insert(1, format!("ms-w{wid:02}:out"));
    fx.port_ids.insert(2, "system:playback_1".into());
    fx.ports.insert("system:playback_1".into());
    let connected = Event::PortsConnected {
        a: 1,
        b: 2,
        connected: true,
    };
    core.handle(connected, &mut fx);
    osc(&mut core, &mut fx, "/n/gain", vec![T::Float(0.25)]);
    fx.ports.remove(&format!("ms-w{wid:02}:out"));
    core.handle(Event::WorkerGone(wid), &mut fx);
    assert!(fx
        .replies
        .iter()
        .any(|(_, m)| m.addr == "/module/died" && m.args == vec![s("n")]));
    assert_eq!(core.status_report().modules[0].role, ModuleRole::Recovering);
    let (spare, token, role, state) = last_assign(&fx, "n");
    assert_ne!(spare, wid);
    assert_eq!(
        (role, state.as_str()),
        (WorkerRole::Replacement, "/ms-n-state")
    );
    ack_assign(
        &mut core,
        &mut fx,
        spare,
        token,
        catalog::module("noise").unwrap(),
    );
    let to_spare: Vec<&ToWorker> = fx
        .sent
        .iter()
        .filter(|(w, _)| *w == spare)
        .map(|(_, m)| m)
        .collect();
    assert!(to_spare.contains(&&ToWorker::TakeNames { id: "n".into() }));
    assert!(
        to_spare
            .iter()
            .any(|m| matches!(m, ToWorker::SetParam { value, .. } if *value == 0.25)),
        "values replayed"
    );
    assert!(
        fx.patched.contains(&(
            true,
            format!("ms-w{spare:02}:out"),
            "system:playback_1".into()
        )),
        "the hand-made connection is restored: {:?}",
        fx.patched
    );
    took_over(&mut core, &mut fx, spare, 256);
    assert!(notified(&fx, "/module/failover", &[s("n"), T::Int(256)]));
    let report = core.status_report();
    assert_eq!(report.modules[0].role, ModuleRole::Primary);
    assert_eq!(report.modules[0].jack_client, format!("ms-w{spare:02}"));
    assert_eq!(
        (report.counters.crash_count, report.counters.replacements),
        (1, 1)
    );
    assert_eq!(report.counters.failover_silent_frames.last, 256.0);
    assert!(fx.unlinked.is_empty(), "the state lives on");
}

/// Creates module `id` of `ty` without a standby, connected by hand from its `out`
/// to `system:playback_1` (JACK port ids 1 and 2); returns its worker.
fn create_patched_by_hand(core: &mut Core, fx: &mut Fake, ty: &str, id: &str) -> WorkerId {
    let wid = create(core, fx, ty, id);
    fx.port_ids.insert(1, format!("ms-w{wid:02}:out"));
    fx.port_ids.insert(2, "system:playback_1".into());
    fx.ports.insert("system:playback_1".into());
    let connected = Event::PortsConnected {
        a: 1,
        b: 2,
        connected: true,
    };
    core.handle(connected, fx);
    wid
}

/// Kills module `id`'s primary and lets the next spare take it over; returns
/// whether the replacement got the hand-made connection back.
fn replacement_reconnected(core: &mut Core, fx: &mut Fake, wid: WorkerId, id: &str) -> bool {
    fx.ports.remove(&format!("ms-w{wid:02}:out"));
    core.handle(Event::WorkerGone(wid), fx);
    let (spare, token, _, _) = last_assign(fx, id);
    ack_assign(core, fx, spare, token, catalog::module("noise").unwrap());
    fx.patched.contains(&(
        true,
        format!("ms-w{spare:02}:out"),
        "system:playback_1".into(),
    ))
}

#[test]
fn jacks_disconnect_notices_for_a_dying_worker_do_not_lose_its_connections() {
    let (mut core, mut fx) = started(2);
    let wid = create_patched_by_hand(&mut core, &mut fx, "noise", "n");
    // JACK tells of the disconnection before the supervisor learns of the death,
    // while the port is still listed.
    let gone = Event::PortsConnected {
        a: 1,
        b: 2,
        connected: false,
    };
    core.handle(gone, &mut fx);
    assert!(replacement_reconnected(&mut core, &mut fx, wid, "n"));
}

#[test]
fn a_dying_primarys_disconnect_notices_do_not_cut_its_standby() {
    let (mut core, mut fx) = started(3);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    fx.port_ids.insert(1, format!("ms-w{primary:02}:out"));
    fx.port_ids.insert(2, "system:playback_1".into());
    fx.ports.insert("system:playback_1".into());
    for connected in [true, false] {
        core.handle(
            Event::PortsConnected {
                a: 1,
                b: 2,
                connected,
            },
            &mut fx,
        );
    }
    core.handle(Event::WorkerGone(primary), &mut fx);
    fx.clock = Some(fx.now() + FORGET_LINK_DELAY + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    let cut = (
        false,
        format!("ms-w{standby:02}:out"),
        "system:playback_1".to_string(),
    );
    assert!(!fx.patched.contains(&cut), "{:?}", fx.patched);
}

#[test]
fn a_disconnection_by_hand_is_forgotten_once_it_is_due() {
    let (mut core, mut fx) = started(2);
    let wid = create_patched_by_hand(&mut core, &mut fx, "noise", "n");
    let undone = Event::PortsConnected {
        a: 1,
        b: 2,
        connected: false,
    };
    core.handle(undone, &mut fx);
    fx.clock = Some(fx.now() + FORGET_LINK_DELAY + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert!(!replacement_reconnected(&mut core, &mut fx, wid, "n"));
}

#[test]
fn a_module_that_keeps_crashing_restarts_fresh_once_then_is_quarantined() {
    let (mut core, mut fx) = started(3);
    osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
    let mut wid = create(&mut core, &mut fx, "vco", "v");
    let t0 = fx.now();
    let limit = core.config.restart.max_deaths;
    let mut fresh_assigns = 0;
    for death in 0..=limit + 1 {
        fx.clock = Some(t0 + Duration::from_secs(death as u64));
        core.handle(Event::WorkerGone(wid), &mut fx);
        if core.status_report().modules[0].role == ModuleRole::Quarantined {
            break;
        }
        while core.pool.ready.len() < 2 {
            let id = core.pool.next_worker;
            core.pool.next_worker += 1;
            ready(&mut core, &mut fx, id);
        }
        let (next, token, role, _) = last_assign(&fx, "v");
        assert_ne!(next, wid, "death {death}: a new worker");
        if role == WorkerRole::Primary {
            fresh_assigns += 1;
        }
        ack_assign(
            &mut core,
            &mut fx,
            next,
            token,
            catalog::module("vco").unwrap(),
        );
        wid = next;
    }
    assert_eq!(fresh_assigns, 1, "one fresh restart");
    assert_eq!(
        fx.unlinked.iter().filter(|u| *u == "/ms-v-state").count(),
        2,
        "fresh, then quarantined"
    );
    let report = core.status_report();
    assert_eq!(report.modules[0].role, ModuleRole::Quarantined);
    assert_eq!(
        (report.counters.fresh_restarts, report.counters.quarantined),
        (1, 1)
    );
    assert!(fx
        .replies
        .iter()
        .any(|(_, m)| m.addr == "/module/quarantined"));
    // A quarantined module keeps its place in the set and can be freed.
    osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
    assert_eq!(last_reply(&fx).0, "/done");
    assert!(core.status_report().modules.is_empty());
    assert!(core.registry_view().segments.is_empty());
}

#[test]
fn a_standby_dying_right_after_taking_over_is_a_crash_loop() {
    let (mut core, mut fx) = started(4);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    fx.clock = Some(fx.now());
    core.handle(Event::WorkerGone(primary), &mut fx);
    fx.clock = Some(fx.now() + Duration::from_millis(10));
    core.handle(Event::WorkerGone(standby), &mut fx);
    let (_, _, role, _) = last_assign(&fx, "v");
    assert_eq!(role, WorkerRole::Primary, "restarted from a fresh state");
    assert_eq!(core.counters.fresh_restarts, 1);
    assert_eq!(fx.unlinked, vec!["/ms-v-state".to_string()]);
}

#[test]
fn a_freed_worker_returns_to_the_pool_or_retires_when_the_pool_is_full() {
    let (mut core, mut fx) = started(1);
    let wid = create(&mut core, &mut fx, "vca", "v");
    ready(&mut core, &mut fx, 1); // the refill arrived: pool full again
    ready(&mut core, &mut fx, 2); // and a surplus spare: twice the pool
    osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
    let token = match fx.sent.last().unwrap() {
        (w, ToWorker::Free { token }) if *w == wid => *token,
        other => panic!("expected Free, got {other:?}"),
    };
    core.handle(Event::FromWorker(wid, FromWorker::Freed { token }), &mut fx);
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/module/free"), s("v")])
    );
    assert_eq!(fx.sent.last().unwrap(), &(wid, ToWorker::Shutdown));
    core.handle(Event::WorkerGone(wid), &mut fx);
    assert_eq!(
        core.counters.crash_count, 0,
        "a retired worker's exit is not a death"
    );
    osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
    assert_eq!(last_reply(&fx).0, "/fail");
}

/// Acknowledges every outstanding Assign the way a worker would.
fn ack_assigns(core: &mut Core, fx: &mut Fake) {
    let assigns: Vec<(WorkerId, u64, String, String)> = fx
        .sent
        .iter()
        .filter_map(|(w, m)| match m {
            ToWorker::Assign {
                token,
                id,
                module_type,
                ..
            } => Some((*w, *token, id.clone(), module_type.clone())),
            _ => None,
        })
        .collect();
    for (wid, token, _, ty) in assigns {
        let spec = catalog::module(&ty).unwrap();
        ack_assign(core, fx, wid, token, spec);
    }
}

const SET: &str = "[[module]]\nid = \"o\"\ntype = \"vco\"\nparams = { freq = 110 }\n\n[[module]]\nid = \"f\"\ntype = \"vcf\"\n\n[[connect]]\nfrom = \"o:out\"\nto = \"f:in\"\n\n[[connect]]\nfrom = \"f:out\"\nto = \"later:in\"\n";

#[test]
fn loading_a_set_creates_its_modules_connects_them_and_answers_once() {
    let (mut core, mut fx) = started(3);
    fx.files.insert("s.toml".into(), SET.into());
    osc(&mut core, &mut fx, "/set/load", vec![s("s.toml")]);
    assert!(fx.replies.is_empty(), "no answer before the modules exist");
    ack_assigns(&mut core, &mut fx);
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/set/load"), s("s.toml")])
    );
    let o = core.modules["o"].worker;
    let f = core.modules["f"].worker;
    assert_eq!(core.modules["o"].params[0], 110.0);
    assert!(fx
        .patched
        .contains(&(true, format!("ms-w{o:02}:out"), format!("ms-w{f:02}:in"))));
}

#[test]
fn a_connection_to_a_missing_port_is_made_when_it_appears_and_again_after_a_restart() {
    let (mut core, mut fx) = started(3);
    fx.files.insert("s.toml".into(), SET.into());
    osc(&mut core, &mut fx, "/set/load", vec![s("s.toml")]);
    ack_assigns(&mut core, &mut fx);
    let f = core.modules["f"].worker;
    let wanted = (true, format!("ms-w{f:02}:out"), "later:in".to_string());
    assert!(!fx.patched.contains(&wanted));
    fx.ports.insert("later:in".into());
    core.handle(Event::PortsAppeared, &mut fx);
    assert_eq!(fx.patched.iter().filter(|p| **p == wanted).count(), 1);
    // The program restarts: its port goes, JACK drops the connection, it comes back.
    fx.patched.retain(|p| *p != wanted);
    core.handle(Event::PortsAppeared, &mut fx);
    assert_eq!(fx.patched.iter().filter(|p| **p == wanted).count(), 1);
}

#[test]
fn a_bad_set_file_fails_with_file_and_line_and_changes_nothing() {
    let (mut core, mut fx) = started(2);
    create(&mut core, &mut fx, "lfo", "keep");
    fx.files.insert(
        "bad.toml".into(),
        "[[module]]\nid = \"x\"\ntype = \"vco\"\nparams = { freq = -5 }\n".into(),
    );
    let sent = fx.sent.len();
    osc(
        &mut core,
        &mut fx,
        "/set/load",
        vec![s("bad.toml"), T::Int(1)],
    );
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/fail");
    assert!(
        matches!(&args[1], T::String(r) if r.starts_with("bad.toml:4: vco.freq = -5 is out of range")),
        "{args:?}"
    );
    assert_eq!(fx.sent.len(), sent, "nothing was sent to any worker");
    assert!(core.modules.contains_key("keep"));
    osc(&mut core, &mut fx, "/set/load", vec![s("missing.toml")]);
    assert!(matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("missing.toml")));
}

#[test]
fn saving_records_parameters_and_every_connection_including_hand_made_ones() {
    let (mut core, mut fx) = started(3);
    let o = create(&mut core, &mut fx, "vco", "o");
    osc(&mut core, &mut fx, "/o/wave", vec![s("square")]);
    // Made in qjackctl: modsynth never saw it.
    fx.patched
        .push((true, format!("ms-w{o:02}:out"), "system:playback_2".into()));
    osc(&mut core, &mut fx, "/set/save", vec![s("out.toml")]);
    assert_eq!(last_reply(&fx).0, "/done");
    let saved = setfile::parse("out.toml", &fx.files["out.toml"]).unwrap();
    assert_eq!(saved.modules.len(), 1);
    assert!(
        saved.modules[0].params.contains(&(1, 2.0)),
        "wave = square is saved"
    );
    assert_eq!(
        saved.connections,
        vec![Connection {
            from: "o:out".into(),
            to: "system:playback_2".into()
        }]
    );
}

#[test]
fn loading_with_replace_frees_modules_that_are_not_in_the_set() {
    let (mut core, mut fx) = started(4);
    create(&mut core, &mut fx, "noise", "old");
    fx.files.insert("s.toml".into(), SET.into());
    osc(
        &mut core,
        &mut fx,
        "/set/load",
        vec![s("s.toml"), T::Int(1)],
    );
    ack_assigns(&mut core, &mut fx);
    assert!(!core.modules.contains_key("old"));
    assert!(fx
        .sent
        .iter()
        .any(|(_, m)| matches!(m, ToWorker::Free { .. })));
    assert_eq!(last_reply(&fx).0, "/done");
}

#[test]
fn status_passes_on_what_the_primary_counted_but_could_not_measure_or_play() {
    let (mut core, mut fx) = started(1);
    let wid = create(&mut core, &mut fx, "vco", "v");
    osc(&mut core, &mut fx, "/status", vec![]);
    let asked = report_requests(&fx);
    for (w, token) in asked {
        let mut report = WorkerReport::default();
        if w == wid {
            report.latencies_unrecorded = 7;
            report.non_finite = 3;
        }
        core.handle(
            Event::FromWorker(w, FromWorker::Report { token, report }),
            &mut fx,
        );
    }
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/status.reply");
    let T::String(json) = &args[0] else {
        panic!("{args:?}")
    };
    let status: StatusReport = serde_json::from_str(json).unwrap();
    let m = status.modules.iter().find(|m| m.id == "v").unwrap();
    assert_eq!((m.latencies_unrecorded, m.non_finite), (7, 3));
}

/// Every `Report` the core has asked for: (worker, token).
fn report_requests(fx: &Fake) -> Vec<(WorkerId, u64)> {
    fx.sent
        .iter()
        .filter_map(|(w, m)| match m {
            ToWorker::Report { token } => Some((*w, *token)),
            _ => None,
        })
        .collect()
}

#[test]
fn status_is_answered_by_its_deadline_with_what_a_busy_worker_reported_last() {
    let (mut core, mut fx) = started(1);
    let wid = create(&mut core, &mut fx, "vco", "v");
    let answer = |core: &mut Core, fx: &mut Fake, late: bool| {
        let asked = report_requests(fx);
        fx.sent.clear();
        let mut skipped = None;
        for (w, token) in asked {
            // The module's worker is busy: the others answer.
            if late && w == wid {
                skipped = Some(token);
                continue;
            }
            let report = WorkerReport {
                xruns: 7,
                ..Default::default()
            };
            core.handle(
                Event::FromWorker(w, FromWorker::Report { token, report }),
                fx,
            );
        }
        skipped
    };
    osc(&mut core, &mut fx, "/status", vec![]);
    answer(&mut core, &mut fx, false);
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/status.reply");
    let T::String(json) = &args[0] else {
        panic!("{args:?}")
    };
    let status: StatusReport = serde_json::from_str(json).unwrap();
    assert!(!status.modules[0].report_late, "answered in time");
    fx.replies.clear();
    osc(&mut core, &mut fx, "/status", vec![]);
    let late = answer(&mut core, &mut fx, true).expect("the module's worker was asked");
    core.tick(&mut fx);
    assert!(fx.replies.is_empty(), "answered before its deadline");
    fx.clock = Some(fx.now() + STATUS_DEADLINE);
    core.tick(&mut fx);
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/status.reply");
    let T::String(json) = &args[0] else {
        panic!("{args:?}")
    };
    let status: StatusReport = serde_json::from_str(json).unwrap();
    assert_eq!(status.modules[0].xruns, 7, "its last report");
    assert!(status.modules[0].report_late, "marked as such");
    // The late answer changes nothing and is not a second reply.
    fx.replies.clear();
    core.handle(
        Event::FromWorker(
            wid,
            FromWorker::Report {
                token: late,
                report: WorkerReport::default(),
            },
        ),
        &mut fx,
    );
    assert!(fx.replies.is_empty());
}

#[test]
fn status_is_answered_when_a_retiring_worker_exits_before_reporting() {
    let (mut core, mut fx) = started(1);
    let wid = create(&mut core, &mut fx, "vca", "v");
    ready(&mut core, &mut fx, 1);
    ready(&mut core, &mut fx, 2);
    osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
    let token = match fx.sent.last().unwrap() {
        (_, ToWorker::Free { token }) => *token,
        other => panic!("{other:?}"),
    };
    core.handle(Event::FromWorker(wid, FromWorker::Freed { token }), &mut fx);
    assert_eq!(
        fx.sent.last().unwrap(),
        &(wid, ToWorker::Shutdown),
        "surplus worker retired"
    );
    osc(&mut core, &mut fx, "/status", vec![]);
    assert!(
        !fx.sent
            .iter()
            .any(|(w, m)| *w == wid && matches!(m, ToWorker::Report { .. })),
        "an exiting worker is not asked"
    );
    let asked = report_requests(&fx);
    core.handle(Event::WorkerGone(wid), &mut fx);
    for (w, token) in asked {
        assert_ne!(
            last_reply(&fx).0,
            "/status.reply",
            "answered before every spare reported"
        );
        core.handle(
            Event::FromWorker(
                w,
                FromWorker::Report {
                    token,
                    report: Default::default(),
                },
            ),
            &mut fx,
        );
    }
    assert_eq!(last_reply(&fx).0, "/status.reply");
}

/// `/set/switch name` in a bundle timetagged for frame `at`, received on frame
/// `received` (which is then the server's last cycle).
fn switch_at(core: &mut Core, fx: &mut Fake, name: &str, received: u32, at: u32) {
    fx.cycle = Some(received);
    core.handle(
        Event::Osc {
            from: client(),
            request: decode(&osc::message("/set/switch", vec![osc::text(name)])),
            received,
            at: Some(at),
        },
        fx,
    );
}

/// The gate changes sent to `wid`: (gain, frame).
fn gates(fx: &Fake, wid: WorkerId) -> Vec<(f32, Option<u32>)> {
    fx.sent
        .iter()
        .filter_map(|(w, m)| match m {
            ToWorker::Gate { gain, at, .. } if *w == wid => Some((*gain, *at)),
            _ => None,
        })
        .collect()
}

/// The last Assign sent for `id`, with its worker and role.
fn last_assign(fx: &Fake, id: &str) -> (WorkerId, u64, WorkerRole, String) {
    fx.sent
        .iter()
        .rev()
        .find_map(|(w, m)| match m {
            ToWorker::Assign {
                token,
                id: i,
                role,
                state,
                ..
            } if i == id => Some((*w, *token, *role, state.clone())),
            _ => None,
        })
        .expect("an Assign")
}

#[test]
fn a_module_gets_a_standby_that_shares_its_state_and_connections() {
    let (mut core, mut fx) = started(3);
    let primary = create_with(&mut core, &mut fx, "vco", "v", "hot");
    let (standby, token, role, state) = last_assign(&fx, "v");
    assert_ne!(standby, primary);
    assert_eq!(
        role,
        WorkerRole::Standby {
            primary_pid: 100 + primary
        }
    );
    assert_eq!(state, "/ms-v-state");
    ack_assign(
        &mut core,
        &mut fx,
        standby,
        token,
        catalog::module("vco").unwrap(),
    );
    fx.ports.insert("system:playback_1".into());
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("v:out"), s("system:playback_1")],
    );
    let p_out = format!("ms-w{primary:02}:out");
    let s_out = format!("ms-w{standby:02}:out");
    assert!(fx
        .patched
        .contains(&(true, p_out, "system:playback_1".into())));
    assert!(
        fx.patched
            .contains(&(true, s_out, "system:playback_1".into())),
        "mirrored to the standby"
    );
}

#[test]
fn connections_made_by_hand_are_mirrored_onto_the_standby() {
    let (mut core, mut fx) = started(3);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    // Someone ran `jack_connect v:out system:playback_2`.
    fx.port_ids.insert(1, format!("ms-w{primary:02}:out"));
    fx.port_ids.insert(2, "system:playback_2".into());
    fx.ports.insert("system:playback_2".into());
    core.handle(
        Event::PortsConnected {
            a: 1,
            b: 2,
            connected: true,
        },
        &mut fx,
    );
    let mirrored = (
        true,
        format!("ms-w{standby:02}:out"),
        "system:playback_2".to_string(),
    );
    assert!(fx.patched.contains(&mirrored));
    core.handle(
        Event::PortsConnected {
            a: 1,
            b: 2,
            connected: false,
        },
        &mut fx,
    );
    let undone = (false, mirrored.1.clone(), mirrored.2.clone());
    assert!(!fx.patched.contains(&undone), "not before it is due");
    fx.clock = Some(fx.now() + FORGET_LINK_DELAY + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert!(
        fx.patched.contains(&undone),
        "and disconnections too, once due"
    );
}

#[test]
fn a_standby_that_took_over_from_a_hung_primary_gets_it_killed() {
    let (mut core, mut fx) = started(3);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    core.handle(Event::FromWorker(standby, FromWorker::Promoted), &mut fx);
    assert_eq!(fx.killed, vec![primary]);
}

#[test]
fn a_module_freed_while_its_standby_is_set_up_returns_that_worker_once() {
    let (mut core, mut fx) = started(3);
    create_with(&mut core, &mut fx, "vco", "v", "hot");
    let (standby, token, _, _) = last_assign(&fx, "v");
    osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
    let free_token = fx.sent.iter().rev().find_map(|(w, m)| match m {
        ToWorker::Free { token } if *w == standby => Some(*token),
        _ => None,
    });
    core.handle(
        Event::FromWorker(
            standby,
            FromWorker::Assigned {
                token,
                result: Err("gone".into()),
            },
        ),
        &mut fx,
    );
    core.handle(
        Event::FromWorker(
            standby,
            FromWorker::Freed {
                token: free_token.unwrap(),
            },
        ),
        &mut fx,
    );
    assert_eq!(core.pool.ready.iter().filter(|&&w| w == standby).count(), 1);
    assert!(
        !fx.sent
            .iter()
            .any(|(w, m)| *w == standby && *m == ToWorker::Shutdown),
        "not retired"
    );
}

#[test]
fn a_dead_primary_fails_over_to_its_standby_with_names_and_values() {
    let (mut core, mut fx) = started(4);
    osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    osc(&mut core, &mut fx, "/v/freq", vec![T::Float(330.0)]);
    core.handle(Event::WorkerGone(primary), &mut fx);
    took_over(&mut core, &mut fx, standby, 0);
    assert!(notified(&fx, "/module/failover", &[s("v"), T::Int(0)]));
    assert_eq!(core.counters.failovers, 1);
    assert_eq!(
        core.status_report().modules[0].jack_client,
        format!("ms-w{standby:02}")
    );
    let to_new: Vec<&ToWorker> = fx
        .sent
        .iter()
        .filter(|(w, _)| *w == standby)
        .map(|(_, m)| m)
        .collect();
    assert!(to_new.contains(&&ToWorker::TakeNames { id: "v".into() }));
    assert!(
        to_new.contains(&&ToWorker::SetParam {
            index: 0,
            value: 330.0,
            at: None,
            received: 0
        }),
        "values replayed"
    );
    let (next, _, role, _) = last_assign(&fx, "v");
    assert_ne!(next, standby);
    assert_eq!(
        role,
        WorkerRole::Standby {
            primary_pid: 100 + standby
        },
        "a fresh standby watches the new primary"
    );
    osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
    assert_eq!(fx.unlinked, vec!["/ms-v-state".to_string()]);
}

#[test]
fn a_primary_that_stops_publishing_while_the_server_runs_is_killed_as_hung() {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "vco", "v");
    let t0 = fx.now();
    fx.clock = Some(t0 + HEARTBEAT_GRACE + HEARTBEAT_INTERVAL);
    // Keeping up: published at the end of the last cycle.
    fx.cycle = Some(100_000);
    fx.published.insert("/ms-v-state".into(), 100_256);
    core.tick(&mut fx);
    assert!(fx.killed.is_empty());
    // The server ran 40 more periods; the module published nothing, and its
    // worker is inside the period it began just after its last publication.
    fx.cycle = Some(100_000 + 40 * 256);
    fx.silences
        .insert("/ms-v-state".into(), Silence::InPeriod(100_256));
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert_eq!(fx.killed, vec![wid]);
    // Killed once, not again on every check while its death is on the way.
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert_eq!(fx.killed, vec![wid]);
}

#[test]
fn a_stopped_primary_is_killed_as_hung() {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "vco", "v");
    fx.clock = Some(fx.now() + HEARTBEAT_GRACE + HEARTBEAT_INTERVAL);
    fx.cycle = Some(100_000 + 40 * 256);
    fx.published.insert("/ms-v-state".into(), 100_256);
    fx.silences.insert("/ms-v-state".into(), Silence::Stopped);
    core.tick(&mut fx);
    assert_eq!(fx.killed, vec![wid]);
}

#[test]
fn workers_the_server_does_not_call_are_not_killed_as_hung() {
    let (mut core, mut fx) = started(4);
    let a = create(&mut core, &mut fx, "vco", "a");
    create(&mut core, &mut fx, "vco", "b");
    fx.clock = Some(fx.now() + HEARTBEAT_GRACE + HEARTBEAT_INTERVAL);
    // Both 40 periods behind, each waiting to be called (a stalled graph), or
    // inside a period begun only just now (called again after the stall).
    fx.cycle = Some(100_000 + 40 * 256);
    fx.published.insert("/ms-a-state".into(), 100_256);
    fx.published.insert("/ms-b-state".into(), 100_256);
    fx.silences
        .insert("/ms-b-state".into(), Silence::InPeriod(100_000 + 39 * 256));
    core.tick(&mut fx);
    assert!(fx.killed.is_empty(), "{:?}", fx.killed);
    // Left out for longer than ABANDONED_PERIODS while the others play: killed.
    let later = 100_000 + (ABANDONED_PERIODS + 10) * 256;
    fx.cycle = Some(later);
    fx.published.insert("/ms-b-state".into(), later);
    fx.silences.remove("/ms-b-state");
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert!(
        fx.killed.is_empty(),
        "half the modules behind: the graph stalls"
    );
    let c = create(&mut core, &mut fx, "vco", "c");
    fx.published.insert("/ms-c-state".into(), later);
    fx.clock = Some(fx.now() + HEARTBEAT_GRACE + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert_eq!(fx.killed, vec![a], "{c:?} and b play, a is left out");
}

#[test]
fn a_new_primary_is_not_judged_before_its_grace_time() {
    let (mut core, mut fx) = started(2);
    create(&mut core, &mut fx, "vco", "v");
    fx.cycle = Some(1_000_000);
    fx.published.insert("/ms-v-state".into(), 0);
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert!(fx.killed.is_empty());
}

#[test]
fn primaries_dying_twice_before_the_module_was_confirmed_fail_the_create() {
    let (mut core, mut fx) = started(2);
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("l")]);
    let (wid, _, _, state) = last_assign(&fx, "l");
    assert_eq!(state, "/ms-l-state", "every module has a state segment");
    core.handle(Event::WorkerGone(wid), &mut fx);
    assert!(fx.replies.is_empty(), "the first death is retried");
    let (again, _, _, _) = last_assign(&fx, "l");
    core.handle(Event::WorkerGone(again), &mut fx);
    assert_eq!(last_reply(&fx).0, "/fail");
    assert!(core.status_report().modules.is_empty());
    assert!(fx.unlinked.iter().all(|u| u == "/ms-l-state"));
    assert!(!fx.unlinked.is_empty());
}

#[test]
fn shutdown_stops_every_worker_a_few_at_a_time_and_refuses_new_requests() {
    let (mut core, mut fx) = started(5);
    core.handle(Event::Shutdown, &mut fx);
    let stops = |fx: &Fake| {
        fx.sent
            .iter()
            .filter(|(_, m)| *m == ToWorker::Shutdown)
            .count()
    };
    assert_eq!(stops(&fx), MAX_CONCURRENT_SPAWNS);
    osc(&mut core, &mut fx, "/module/new", vec![s("vco"), s("late")]);
    assert_eq!(last_reply(&fx).0, "/fail");
    for id in 0..5 {
        assert!(!core.is_stopped());
        core.handle(Event::WorkerGone(id), &mut fx);
    }
    assert_eq!(stops(&fx), 5);
    assert!(core.is_stopped());
}

/// Saves the running set and returns its connections as (from, to).
fn saved_connections(core: &mut Core, fx: &mut Fake) -> Vec<(String, String)> {
    osc(core, fx, "/set/save", vec![s("saved.toml")]);
    let set = setfile::parse("saved.toml", &fx.files["saved.toml"]).unwrap();
    set.connections
        .into_iter()
        .map(|c| (c.from, c.to))
        .collect()
}

/// JACK reports `a` and `b` connected (`true`) or disconnected, by port ids 1 and 2.
fn jack_says(core: &mut Core, fx: &mut Fake, a: &str, b: &str, connected: bool) {
    fx.port_ids.insert(1, a.into());
    fx.port_ids.insert(2, b.into());
    if connected {
        fx.patched.push((true, a.into(), b.into()));
    } else {
        fx.patched
            .retain(|(c, x, y)| !(*c && ((x == a && y == b) || (x == b && y == a))));
    }
    core.handle(
        Event::PortsConnected {
            a: 1,
            b: 2,
            connected,
        },
        fx,
    );
}

#[test]
fn a_saved_set_names_modules_never_workers_and_leaves_standby_mirrors_out() {
    let (mut core, mut fx) = started(6);
    let (_, osc_standby) = create_with_standby(&mut core, &mut fx, "vco", "osc");
    let (filt, filt_standby) = create_with_standby(&mut core, &mut fx, "vcf", "f");
    fx.ports.insert("system:playback_1".into());
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("osc:out"), s("f:in")],
    );
    // Made by hand, by real names: the primary's output to a speaker, mirrored.
    jack_says(
        &mut core,
        &mut fx,
        &format!("ms-w{filt:02}:out"),
        "system:playback_1",
        true,
    );
    let mirrors = fx
        .patched
        .iter()
        .filter(|(c, a, b)| {
            *c && [osc_standby, filt_standby].iter().any(|w| {
                a.starts_with(&format!("ms-w{w:02}:")) || b.starts_with(&format!("ms-w{w:02}:"))
            })
        })
        .count();
    assert!(
        mirrors >= 4,
        "the standbys are patched too: {:?}",
        fx.patched
    );
    let mut saved = saved_connections(&mut core, &mut fx);
    saved.sort();
    assert_eq!(
        saved,
        vec![
            ("f:out".to_string(), "system:playback_1".to_string()),
            ("osc:out".to_string(), "f:in".to_string()),
        ]
    );
}

#[test]
fn patch_commands_refuse_worker_ports_and_keep_real_module_ports_by_module_name() {
    let (mut core, mut fx) = started(4);
    let wid = create(&mut core, &mut fx, "vco", "osc");
    fx.ports.insert("system:playback_1".into());
    fx.ports.insert("other-w07:in_1".into());
    for worker_port in ["other-w07:in_1", "ms-w03:in_1"] {
        osc(
            &mut core,
            &mut fx,
            "/patch/connect",
            vec![s("osc:out"), s(worker_port)],
        );
        let (addr, args) = last_reply(&fx);
        assert_eq!(addr, "/fail");
        assert!(
            matches!(&args[1], T::String(r) if r.contains(&format!("{worker_port} is a modsynth worker port; name the module"))),
            "{args:?}"
        );
    }
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s(&format!("ms-w{wid:02}:out")), s("system:playback_1")],
    );
    assert_eq!(last_reply(&fx).0, "/done");
    assert_eq!(
        saved_connections(&mut core, &mut fx),
        vec![("osc:out".to_string(), "system:playback_1".to_string())]
    );
}

#[test]
fn a_connection_made_by_hand_to_a_standby_port_is_moved_to_its_module() {
    let (mut core, mut fx) = started(4);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "vco", "osc");
    fx.ports.insert("system:playback_1".into());
    jack_says(
        &mut core,
        &mut fx,
        &format!("ms-w{standby:02}:out"),
        "system:playback_1",
        true,
    );
    assert!(
        fx.patched.contains(&(
            true,
            format!("ms-w{primary:02}:out"),
            "system:playback_1".into()
        )),
        "not moved to the module: {:?}",
        fx.patched
    );
    // JACK then reports the module's connection: it is part of the patch, and the
    // standby's link is its mirror, left alone.
    jack_says(
        &mut core,
        &mut fx,
        &format!("ms-w{primary:02}:out"),
        "system:playback_1",
        true,
    );
    assert!(!fx.patched.iter().any(|(c, _, _)| !c), "{:?}", fx.patched);
    assert_eq!(
        saved_connections(&mut core, &mut fx),
        vec![("osc:out".to_string(), "system:playback_1".to_string())]
    );
    // A mirror the supervisor made itself is not moved again.
    let before = fx.patched.len();
    jack_says(
        &mut core,
        &mut fx,
        &format!("ms-w{standby:02}:out"),
        "system:playback_1",
        true,
    );
    assert_eq!(fx.patched.len(), before + 1, "{:?}", fx.patched);
}

#[test]
fn a_connection_made_by_hand_to_a_spare_port_is_undone() {
    let (mut core, mut fx) = started(2);
    let spare = *core.pool.ready.front().unwrap();
    fx.ports.insert("system:capture_1".into());
    let port = format!("ms-w{spare:02}:in_1");
    fx.ports.insert(port.clone());
    jack_says(&mut core, &mut fx, "system:capture_1", &port, true);
    assert_eq!(
        fx.patched.last(),
        Some(&(false, "system:capture_1".to_string(), port)),
        "{:?}",
        fx.patched
    );
    assert!(saved_connections(&mut core, &mut fx).is_empty());
}

#[test]
fn a_set_connection_undone_in_a_patchbay_is_neither_saved_nor_made_again() {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "vco", "osc");
    fx.ports.insert("system:playback_1".into());
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("osc:out"), s("system:playback_1")],
    );
    let real = format!("ms-w{wid:02}:out");
    jack_says(&mut core, &mut fx, &real, "system:playback_1", true);
    jack_says(&mut core, &mut fx, &real, "system:playback_1", false);
    fx.clock = Some(fx.now() + FORGET_LINK_DELAY);
    core.tick(&mut fx);
    assert!(saved_connections(&mut core, &mut fx).is_empty());
    let before = fx.patched.len();
    core.handle(Event::PortsAppeared, &mut fx);
    assert_eq!(fx.patched.len(), before, "made again: {:?}", fx.patched);
}

#[test]
fn a_connection_made_by_a_workers_real_port_name_ends_with_its_module() {
    let (mut core, mut fx) = started(2);
    let a = create(&mut core, &mut fx, "vco", "osc");
    let real = format!("ms-w{a:02}:out");
    fx.ports.insert(real.clone());
    fx.ports.insert("system:playback_1".into());
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s(&real), s("system:playback_1")],
    );
    assert_eq!(last_reply(&fx).0, "/done");
    osc(&mut core, &mut fx, "/module/free", vec![s("osc")]);
    // The worker undoes every connection of its ports before it is a spare again;
    // the next graph change must not patch the spare's port back.
    fx.patched.clear();
    core.handle(Event::PortsAppeared, &mut fx);
    assert!(fx.patched.is_empty(), "{:?}", fx.patched);
}

#[test]
fn creates_beyond_the_module_limit_are_refused_with_limit_and_change_nothing() {
    let mut core = Core::new(Config {
        pool: 1,
        instance: "ms".into(),
        restart: RestartPolicy::default(),
        limits: Limits {
            max_modules: 2,
            jack_clients: 192,
        },
        placement: Default::default(),
    });
    let mut fx = Fake::default();
    core.start(&mut fx);
    // No spare is ready yet: all three wait, and waiting ones count.
    for id in ["a", "b", "c"] {
        osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s(id)]);
    }
    let fails: Vec<String> = fx
        .replies
        .iter()
        .filter(|(_, m)| m.addr == "/fail")
        .map(|(_, m)| format!("{:?}", m.args))
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].contains("\"c\"") && fails[0].contains("limit: 2 modules"));
}

#[test]
fn creates_beyond_the_jack_client_budget_are_refused_standby_none_fits_longer() {
    let mut core = Core::new(Config {
        pool: 1,
        instance: "ms".into(),
        restart: RestartPolicy::default(),
        limits: Limits {
            max_modules: 64,
            jack_clients: 3,
        },
        placement: Default::default(),
    });
    let mut fx = Fake::default();
    core.start(&mut fx);
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("a")]);
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("b")]);
    osc(
        &mut core,
        &mut fx,
        "/module/new",
        vec![s("lfo"), s("c"), s("standby"), s("none")],
    );
    let fails: Vec<String> = fx
        .replies
        .iter()
        .filter(|(_, m)| m.addr == "/fail")
        .map(|(_, m)| format!("{:?}", m.args))
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].contains("\"b\"") && fails[0].contains("JACK clients"));
}

#[test]
fn notify_subscriptions_expire_unless_renewed() {
    let (mut core, mut fx) = started(4);
    let first = create(&mut core, &mut fx, "noise", "n");
    let second = create(&mut core, &mut fx, "noise", "m");
    osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
    let t0 = fx.now();
    let died = |fx: &Fake| {
        fx.replies
            .iter()
            .filter(|(_, m)| m.addr == "/module/died")
            .count()
    };
    // Renewed just before it runs out: still subscribed past the first expiry.
    fx.clock = Some(t0 + NOTIFY_TTL - Duration::from_secs(1));
    osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
    fx.clock = Some(t0 + NOTIFY_TTL + Duration::from_secs(1));
    core.handle(Event::WorkerGone(first), &mut fx);
    assert_eq!(died(&fx), 1, "a renewed subscriber hears deaths");
    // Not renewed: silence after it expired.
    fx.clock = Some(t0 + 2 * NOTIFY_TTL + Duration::from_secs(1));
    core.handle(Event::WorkerGone(second), &mut fx);
    assert_eq!(died(&fx), 1, "an expired subscriber hears nothing");
}

mod hostile {
    //! Whatever a sender gets past the decoder, the core refuses or does without
    //! a panic: random requests (checked by `decode` like the real ones) against a
    //! core with modules, bounded so the normal test run stays quick.
    use super::*;
    use proptest::prelude::*;

    fn arg() -> impl Strategy<Value = T> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "vco", "seq", "lfo", "v", "n", "q", "freq", "steps", "wave", "saw", "value",
                "v:out", "n:out", "v:fm", "x:y", "system:playback_1", "standby", "none",
                "hot", "s.toml", "gain", "seed",
            ])
            .prop_map(|w| T::String(w.to_string())),
            1 => any::<f32>().prop_map(T::Float),
            1 => any::<i32>().prop_map(T::Int),
            1 => any::<f64>().prop_map(T::Double),
            1 => prop::sample::select(vec![0.0f32, -0.0, 1.0, 16.0, 1e9, f32::NAN, f32::MAX])
                .prop_map(T::Float),
        ]
    }

    fn request() -> impl Strategy<Value = (String, Vec<T>)> {
        let addr = prop::sample::select(vec![
            "/module/new",
            "/module/free",
            "/module/set",
            "/module/get",
            "/patch/connect",
            "/patch/disconnect",
            "/set/load",
            "/set/save",
            "/set/dir",
            "/status",
            "/notify",
            "/sync",
            "/v/freq",
            "/n/gain",
            "/q/steps",
        ])
        .prop_map(str::to_string);
        (addr, prop::collection::vec(arg(), 0..6))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 300,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_requests_and_worker_deaths_never_panic_the_core(
            requests in prop::collection::vec(request(), 1..40),
            deaths in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        ) {
            let (mut core, mut fx) = started(3);
            create(&mut core, &mut fx, "vco", "v");
            create(&mut core, &mut fx, "noise", "n");
            fx.files.insert("s.toml".into(), "[[module]]\nid = \"q\"\ntype = \"seq\"\n".into());
            for (i, (addr, args)) in requests.into_iter().enumerate() {
                osc(&mut core, &mut fx, &addr, args);
                if let Some(d) = deaths.get(i) {
                    let ids: Vec<WorkerId> = core.workers.keys().copied().collect();
                    if !ids.is_empty() {
                        core.handle(Event::WorkerGone(ids[d.index(ids.len())]), &mut fx);
                    }
                }
                core.tick(&mut fx);
            }
            let _ = core.status_report();
        }
    }
}

#[test]
fn changes_for_a_stalled_worker_are_held_back_and_the_last_one_sent_once_it_plays() {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "const", "c");
    let sets_to = |fx: &Fake| -> Vec<f32> {
        fx.sent
            .iter()
            .filter_map(|(w, m)| match m {
                ToWorker::SetParam { value, .. } if *w == wid => Some(*value),
                _ => None,
            })
            .collect()
    };
    fx.clock = Some(fx.now() + HEARTBEAT_GRACE + Duration::from_millis(1));
    fx.cycle = Some(100_000);
    // Playing: sent at once.
    fx.published.insert("/ms-c-state".into(), 100_000);
    osc(&mut core, &mut fx, "/c/value", vec![T::Float(1.0)]);
    assert_eq!(sets_to(&fx), vec![1.0]);
    // Stopped for more than STALL_PERIODS: kept, not sent.
    fx.published
        .insert("/ms-c-state".into(), 100_000 - 256 * (STALL_PERIODS + 1));
    for v in [2.0, 3.0, 4.0] {
        osc(&mut core, &mut fx, "/c/value", vec![T::Float(v)]);
    }
    assert_eq!(sets_to(&fx), vec![1.0]);
    // Two replaced by a newer value before they went out.
    assert_eq!(core.status_report().counters.params_held_back, 2);
    // Still stopped at the next heartbeat: still nothing.
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert_eq!(sets_to(&fx), vec![1.0]);
    // Playing again: the last value, once.
    fx.published.insert("/ms-c-state".into(), 100_256);
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert_eq!(sets_to(&fx), vec![1.0, 4.0]);
}

#[test]
fn more_immediate_changes_in_one_period_than_the_budget_wait_and_the_last_goes_out() {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "const", "c");
    let sets_to = |fx: &Fake| -> Vec<f32> {
        fx.sent
            .iter()
            .filter_map(|(w, m)| match m {
                ToWorker::SetParam { value, .. } if *w == wid => Some(*value),
                _ => None,
            })
            .collect()
    };
    fx.clock = Some(fx.now() + HEARTBEAT_GRACE + Duration::from_millis(1));
    fx.cycle = Some(100_000);
    fx.published.insert("/ms-c-state".into(), 100_000);
    for i in 0..(SEND_BUDGET + 50) {
        osc(
            &mut core,
            &mut fx,
            "/c/value",
            vec![T::Float(i as f32 / 100.0)],
        );
    }
    assert_eq!(sets_to(&fx).len(), SEND_BUDGET as usize);
    // A scheduled change is not merged: it goes out on its sample.
    let at = Event::Osc {
        from: client(),
        request: decode(&osc::message("/c/value", vec![T::Float(9.0)])),
        received: 1000,
        at: Some(200_000),
    };
    core.handle(at, &mut fx);
    assert_eq!(sets_to(&fx).len(), SEND_BUDGET as usize + 1);
    // The worker plays a period: the held value (the last one) goes out.
    fx.published.insert("/ms-c-state".into(), 100_256);
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    let sent = sets_to(&fx);
    assert_eq!(sent.len(), SEND_BUDGET as usize + 2);
    assert_eq!(sent.last(), Some(&((SEND_BUDGET + 49) as f32 / 100.0)));
    assert_eq!(core.status_report().counters.params_held_back, 49);
    // Over budget again, then a period played: a new value replaces the held
    // one instead of being overtaken by it.
    for i in 0..(SEND_BUDGET + 1) {
        osc(&mut core, &mut fx, "/c/value", vec![T::Float(i as f32)]);
    }
    fx.published.insert("/ms-c-state".into(), 100_512);
    osc(&mut core, &mut fx, "/c/value", vec![T::Float(7.5)]);
    fx.published.insert("/ms-c-state".into(), 100_768);
    fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
    core.tick(&mut fx);
    assert_eq!(sets_to(&fx).last(), Some(&7.5));
}

/// A plugin type for the core's tests: one parameter, no plugin behind it (the
/// core never looks further than the catalog entry).
fn fake_plugins(name: &str) -> Result<ModuleSpec, String> {
    use modsynth_model::catalog::{Direction, Kind, ParamSpec, PortSpec, Signal, Smoothing};
    static PORTS: [PortSpec; 1] = [PortSpec {
        name: "out",
        direction: Direction::Out,
        signal: Signal::Audio,
        doc: "",
    }];
    static PARAMS: [ParamSpec; 1] = [ParamSpec {
        name: "level",
        unit: "",
        min: 0.0,
        max: 1.0,
        default: 0.5,
        values: &[],
        doc: "",
        smoothing: Smoothing::None,
    }];
    match name {
        "lv2:urn:test:level" => Ok(ModuleSpec {
            name: "lv2:urn:test:level",
            kind: Kind::Lv2,
            doc: "a test plugin",
            ports: &PORTS,
            params: &PARAMS,
        }),
        _ => Err(format!("no LV2 plugin '{name}' is installed")),
    }
}

#[test]
fn a_plugins_parameter_changes_go_to_its_lockstep_standby_too_and_a_built_ins_do_not() {
    catalog::runtime::set_resolver(fake_plugins);
    let (mut core, mut fx) = started(4);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "lv2:urn:test:level", "p");
    let (vco, vco_standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    let sent = fx.sent.len();
    osc(
        &mut core,
        &mut fx,
        "/module/set",
        vec![s("p"), s("level"), T::Float(0.25)],
    );
    osc(
        &mut core,
        &mut fx,
        "/module/set",
        vec![s("v"), s("freq"), T::Float(220.0)],
    );
    let to = |w: WorkerId| -> Vec<f32> {
        fx.sent[sent..]
            .iter()
            .filter_map(|(to, m)| match m {
                ToWorker::SetParam { value, .. } if *to == w => Some(*value),
                _ => None,
            })
            .collect()
    };
    assert_eq!(to(primary), [0.25]);
    assert_eq!(
        to(standby),
        [0.25],
        "the plugin's standby plays in lockstep"
    );
    assert_eq!(to(vco), [220.0]);
    assert!(
        to(vco_standby).is_empty(),
        "a built-in standby loads the state"
    );
    osc(
        &mut core,
        &mut fx,
        "/module/set",
        vec![s("p"), s("level"), T::Float(2.0)],
    );
    assert_eq!(last_reply(&fx).0, "/fail", "the plugin's range holds");
}

/// The plugin state a worker's `Assign` for module `id` carried last.
fn last_plugin_state(fx: &Fake, id: &str) -> Option<String> {
    fx.sent.iter().rev().find_map(|(_, m)| match m {
        ToWorker::Assign {
            id: i,
            plugin_state,
            ..
        } if i == id => Some(plugin_state.clone()),
        _ => None,
    })?
}

/// Answers the last `SavePluginState` sent to `wid` with `result`.
fn answer_state(
    core: &mut Core,
    fx: &mut Fake,
    wid: WorkerId,
    result: Result<Option<String>, String>,
) {
    let token = fx
        .sent
        .iter()
        .rev()
        .find_map(|(w, m)| match m {
            ToWorker::SavePluginState { token } if *w == wid => Some(*token),
            _ => None,
        })
        .expect("a SavePluginState");
    core.handle(
        Event::FromWorker(wid, FromWorker::PluginState { token, result }),
        fx,
    );
}

#[test]
fn set_save_waits_for_the_plugins_states_keeps_them_with_the_module_and_names_a_plugin_that_does_not_answer(
) {
    catalog::runtime::set_resolver(fake_plugins);
    let (mut core, mut fx) = started(4);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "lv2:urn:test:level", "p");
    create(&mut core, &mut fx, "vco", "v");
    assert_eq!(last_plugin_state(&fx, "p"), None);
    let sent = fx.sent.len();
    osc(&mut core, &mut fx, "/set/save", vec![s("a.toml")]);
    let asked: Vec<WorkerId> = fx.sent[sent..]
        .iter()
        .filter(|(_, m)| matches!(m, ToWorker::SavePluginState { .. }))
        .map(|(w, _)| *w)
        .collect();
    assert_eq!(asked, [primary], "only the plugin's primary is asked");
    assert!(
        !fx.files.contains_key("a.toml"),
        "written once the state is in"
    );
    let state = "<urn:modsynth:state> a <http://lv2plug.in/ns/ext/presets#Preset> .\n";
    answer_state(&mut core, &mut fx, primary, Ok(Some(state.into())));
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/set/save"), s("a.toml")])
    );
    assert!(
        fx.files["a.toml"].contains(&format!("state = '''\n{state}'''\n")),
        "{}",
        fx.files["a.toml"]
    );
    // The module keeps it: the standby made after its standby is gone restores it.
    core.handle(Event::WorkerGone(standby), &mut fx);
    let (new_standby, _, role, _) = last_assign(&fx, "p");
    assert_ne!(new_standby, standby);
    assert!(matches!(role, WorkerRole::Standby { .. }));
    assert_eq!(last_plugin_state(&fx, "p").as_deref(), Some(state));

    // A primary that does not answer in time: the rest is written, the plugin
    // named, the state it had kept; its late answer changes nothing.
    osc(&mut core, &mut fx, "/set/save", vec![s("b.toml")]);
    fx.clock = Some(fx.now() + plugin_states::SAVE_DEADLINE);
    core.tick(&mut fx);
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/fail");
    assert_eq!(
        args[1],
        s("b.toml: written, but without the current plugin state of p: its plugin did not hand its state over within 3 s (the file has the state each was last loaded with, if any)")
    );
    assert!(fx.files["b.toml"].contains(state));
    assert!(fx.files["b.toml"].contains("id = \"v\""));
    let replies = fx.replies.len();
    answer_state(&mut core, &mut fx, primary, Ok(Some("late".into())));
    assert_eq!(fx.replies.len(), replies);
    // A worker that fails to save is named the same way.
    osc(&mut core, &mut fx, "/set/save", vec![s("c.toml")]);
    answer_state(
        &mut core,
        &mut fx,
        primary,
        Err("lilv could not take it".into()),
    );
    assert!(
        matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("p: lilv could not take it"))
    );
}

#[test]
fn a_mapped_cc_becomes_a_parameter_change_counted_from_its_frame_and_is_saved_until_the_module_goes(
) {
    let (mut core, mut fx) = started(2);
    let wid = create(&mut core, &mut fx, "vca", "amp");
    osc(
        &mut core,
        &mut fx,
        "/map/cc",
        vec![T::Int(7), T::Int(2), s("amp"), s("gain")],
    );
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/map/cc"), s("amp"), s("gain")])
    );
    // Two CCs in one drain: only the last value goes out, stamped with its frame.
    let cc = |frame, value| super::midi::MidiIn {
        frame,
        status: 0xB1,
        data1: 7,
        data2: value,
    };
    fx.midi = vec![
        cc(5000, 10),
        cc(5100, 127),
        super::midi::MidiIn {
            status: 0xB2,
            ..cc(5200, 0)
        },
    ];
    fx.sent.clear();
    fx.clock = Some(fx.now() + Duration::from_millis(10));
    core.tick(&mut fx);
    let vca = catalog::module("vca").unwrap();
    let gain = vca.param_index("gain").unwrap() as u16;
    let max = vca.params[gain as usize].max;
    let sets: Vec<&ToWorker> = fx
        .sent
        .iter()
        .filter(|(w, m)| *w == wid && matches!(m, ToWorker::SetParam { .. }))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert!(
        matches!(sets[0], ToWorker::SetParam { index, value, received: 5100, at: None } if *index == gain && *value == max),
        "{sets:?}"
    );
    osc(&mut core, &mut fx, "/set/save", vec![s("m.toml")]);
    let saved = setfile::parse("m.toml", &fx.files["m.toml"]).unwrap();
    assert_eq!(saved.maps.len(), 1);
    assert_eq!((saved.maps[0].cc, saved.maps[0].channel), (7, Some(2)));
    assert_eq!(core.saved().maps, saved.maps);
    osc(&mut core, &mut fx, "/module/free", vec![s("amp")]);
    osc(&mut core, &mut fx, "/map/list", vec![]);
    assert_eq!(last_reply(&fx), ("/map/list.reply".into(), vec![]));
    osc(&mut core, &mut fx, "/map/unmap", vec![s("amp"), s("gain")]);
    assert!(last_reply(&fx).1[1] == s("amp.gain is not mapped (`modsynth maps` lists the maps)"));
}

#[test]
fn a_connect_the_jack_server_does_not_answer_fails_at_its_deadline_and_holds_nothing_else() {
    let (mut core, mut fx) = started(4);
    let wid = create(&mut core, &mut fx, "vco", "osc");
    fx.ports.insert("system:playback_1".into());
    let t0 = Instant::now();
    fx.clock = Some(t0);
    fx.patches_wait = true;
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("osc:out"), s("system:playback_1")],
    );
    assert_eq!(fx.under_way.len(), 1, "asked of JACK");
    // The core is not waiting for JACK: the next requests are taken at once.
    let sent = fx.sent.len();
    osc(
        &mut core,
        &mut fx,
        "/module/set",
        vec![s("osc"), s("freq"), T::Float(330.0)],
    );
    assert!(
        fx.sent.len() > sent,
        "/module/set sent on while the connect is under way"
    );
    let replies = fx.replies.len();
    osc(&mut core, &mut fx, "/module/get", vec![s("osc"), s("freq")]);
    assert!(
        fx.replies.len() > replies,
        "/module/get answered while the connect is under way"
    );
    assert!(fx
        .replies
        .iter()
        .all(|(_, m)| m.args.first() != Some(&s("/patch/connect"))));
    // Not answered by its deadline: failed with the reason, nothing kept.
    assert_eq!(
        core.next_deadline().map(|d| d <= t0 + PATCH_DEADLINE),
        Some(true)
    );
    fx.clock = Some(t0 + PATCH_DEADLINE);
    core.tick(&mut fx);
    let (_, m) = fx
        .replies
        .iter()
        .rev()
        .find(|(_, m)| m.args.first() == Some(&s("/patch/connect")))
        .expect("the connect's reply");
    assert_eq!(m.addr, "/fail");
    assert!(
        matches!(&m.args[1], T::String(r) if r.contains("the JACK server did not answer connecting") && r.contains("within 2 s")),
        "{:?}",
        m.args
    );
    assert!(
        core.patch.wanted().is_empty(),
        "a failed connect is not kept"
    );
    // JACK makes it after all: no second reply, and it is undone.
    let replies = fx.replies.len();
    let first = fx.under_way[0].clone();
    core.handle(
        Event::Patched {
            token: first.token,
            result: Ok(()),
        },
        &mut fx,
    );
    assert_eq!(fx.replies.len(), replies);
    let undo = fx.under_way.last().unwrap().clone();
    assert_eq!(
        (undo.connect, &undo.src, &undo.dst),
        (false, &first.src, &first.dst),
        "the late connection is undone"
    );
    core.handle(
        Event::Patched {
            token: undo.token,
            result: Ok(()),
        },
        &mut fx,
    );

    // A connect the server answers is replied to when its answer arrives.
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("osc:out"), s("system:playback_1")],
    );
    let job = fx.under_way.last().unwrap().clone();
    assert_eq!((job.connect, job.dst.as_str()), (true, "system:playback_1"));
    let _ = wid;
    core.handle(
        Event::Patched {
            token: job.token,
            result: Ok(()),
        },
        &mut fx,
    );
    assert_eq!(
        last_reply(&fx),
        (
            "/done".to_string(),
            vec![s("/patch/connect"), s("osc:out"), s("system:playback_1")]
        )
    );
    assert_eq!(core.patch.wanted().len(), 1);
}

#[test]
fn a_set_load_answers_once_its_connections_are_made() {
    let (mut core, mut fx) = started(4);
    fx.ports.insert("system:playback_1".into());
    fx.files.insert(
        "a.toml".into(),
        "[[module]]\nid = \"osc\"\ntype = \"vco\"\nstandby = \"none\"\n\n\
         [[connect]]\nfrom = \"osc:out\"\nto = \"system:playback_1\"\n"
            .into(),
    );
    fx.patches_wait = true;
    osc(&mut core, &mut fx, "/set/load", vec![s("a.toml")]);
    let (wid, token, _, _) = last_assign(&fx, "osc");
    ack_assign(
        &mut core,
        &mut fx,
        wid,
        token,
        catalog::module("vco").unwrap(),
    );
    let load_answers = |fx: &Fake| {
        fx.replies
            .iter()
            .filter(|(_, m)| m.args.first() == Some(&s("/set/load")))
            .count()
    };
    let connect = fx
        .under_way
        .last()
        .cloned()
        .expect("its connection asked of JACK");
    assert_eq!(connect.dst, "system:playback_1");
    assert_eq!(load_answers(&fx), 0, "not answered before it is connected");
    core.handle(
        Event::Patched {
            token: connect.token,
            result: Ok(()),
        },
        &mut fx,
    );
    assert_eq!(
        last_reply(&fx),
        ("/done".to_string(), vec![s("/set/load"), s("a.toml")])
    );
}
