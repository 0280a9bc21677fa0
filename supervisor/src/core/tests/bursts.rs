//! The pool under bursts: a set load sizes the pool for its modules and plays
//! every primary before any standby, freed workers serve waiting creates, and a
//! worker start that fails fails no create that a retry can still serve.

use super::*;

/// A set file of `n` VCOs named `<prefix>0..`, each with a hot standby.
fn vcos(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("[[module]]\nid = \"{prefix}{i}\"\ntype = \"vco\"\n\n"))
        .collect()
}

/// Answers every Assign not answered yet; returns how many it answered.
fn ack_new_assigns(core: &mut Core, fx: &mut Fake, answered: &mut HashSet<u64>) -> usize {
    let assigns: Vec<(WorkerId, u64, String)> = fx
        .sent
        .iter()
        .filter_map(|(w, m)| match m {
            ToWorker::Assign {
                token, module_type, ..
            } if !answered.contains(token) => Some((*w, *token, module_type.clone())),
            _ => None,
        })
        .collect();
    for (wid, token, ty) in &assigns {
        answered.insert(*token);
        ack_assign(core, fx, *wid, *token, catalog::module(ty).unwrap());
    }
    assigns.len()
}

/// Answers every Free not answered yet, as the workers would.
fn ack_frees(core: &mut Core, fx: &mut Fake, answered: &mut HashSet<u64>) {
    let frees: Vec<(WorkerId, u64)> = fx
        .sent
        .iter()
        .filter_map(|(w, m)| match m {
            ToWorker::Free { token } if !answered.contains(token) => Some((*w, *token)),
            _ => None,
        })
        .collect();
    for (wid, token) in frees {
        answered.insert(token);
        core.handle(Event::FromWorker(wid, FromWorker::Freed { token }), fx);
    }
}

/// Lets every worker started so far arrive, acknowledging assignments as they go,
/// until nothing more happens.
fn run_until_quiet(
    core: &mut Core,
    fx: &mut Fake,
    arrived: &mut usize,
    answered: &mut HashSet<u64>,
) {
    loop {
        let acked = ack_new_assigns(core, fx, answered);
        let mut progressed = acked > 0;
        while *arrived < fx.spawned.len() {
            let id = fx.spawned[*arrived];
            *arrived += 1;
            ready(core, fx, id);
            progressed = true;
        }
        if !progressed {
            after_refill_delay(core, fx);
            if ack_new_assigns(core, fx, answered) == 0 && *arrived == fx.spawned.len() {
                return;
            }
        }
    }
}

#[test]
fn a_set_load_plays_every_primary_before_it_assigns_any_standby() {
    let (mut core, mut fx) = started(4);
    fx.files.insert("big.toml".into(), vcos("v", 12));
    let (mut arrived, mut answered) = (fx.spawned.len(), HashSet::new());
    osc(&mut core, &mut fx, "/set/load", vec![s("big.toml")]);
    // Serve the creates one spare at a time and watch the order of the roles.
    let mut roles = Vec::new();
    loop {
        ack_new_assigns(&mut core, &mut fx, &mut answered);
        if arrived == fx.spawned.len() {
            after_refill_delay(&mut core, &mut fx);
            if arrived == fx.spawned.len() {
                break;
            }
        }
        let id = fx.spawned[arrived];
        arrived += 1;
        ready(&mut core, &mut fx, id);
    }
    for (_, m) in &fx.sent {
        if let ToWorker::Assign { role, .. } = m {
            roles.push(*role == WorkerRole::Primary);
        }
    }
    assert_eq!(roles.len(), 24, "12 primaries and 12 standbys: {roles:?}");
    assert!(
        roles[..12].iter().all(|&p| p),
        "the first 12 assignments are the primaries: {roles:?}"
    );
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/set/load"), s("big.toml")])
    );
    assert!(core.modules.values().all(|m| m.standby_worker.is_some()));
}

#[test]
fn a_set_load_starts_workers_for_all_its_waiting_creates_not_one_at_a_time() {
    let (mut core, mut fx) = started(2);
    fx.files.insert("big.toml".into(), vcos("v", 10));
    let before = fx.spawned.len();
    osc(&mut core, &mut fx, "/set/load", vec![s("big.toml")]);
    // 2 creates took the spares, 8 wait: the pool is sized for them (starts
    // still go a few at a time, and each arrival starts the next).
    assert_eq!(core.modules.waiting(), 8);
    assert_eq!(fx.spawned.len() - before, MAX_CONCURRENT_SPAWNS);
    let (mut arrived, mut answered) = (before, HashSet::new());
    run_until_quiet(&mut core, &mut fx, &mut arrived, &mut answered);
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/set/load"), s("big.toml")])
    );
    assert_eq!(core.modules.len(), 10);
}

#[test]
fn a_replace_reuses_the_freed_workers_for_the_new_set_instead_of_starting_new_ones() {
    let (mut core, mut fx) = started(2);
    fx.files.insert("a.toml".into(), vcos("a", 8));
    fx.files.insert("b.toml".into(), vcos("b", 8));
    let (mut arrived, mut answered) = (fx.spawned.len(), HashSet::new());
    osc(&mut core, &mut fx, "/set/load", vec![s("a.toml")]);
    run_until_quiet(&mut core, &mut fx, &mut arrived, &mut answered);
    assert_eq!(core.modules.len(), 8);
    let workers_for_a = fx.spawned.len();
    osc(
        &mut core,
        &mut fx,
        "/set/load",
        vec![s("b.toml"), T::Int(1)],
    );
    let mut frees = HashSet::new();
    ack_frees(&mut core, &mut fx, &mut frees);
    run_until_quiet(&mut core, &mut fx, &mut arrived, &mut answered);
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/set/load"), s("b.toml")])
    );
    assert!(core.modules.keys().all(|id| id.starts_with('b')));
    assert!(core.modules.values().all(|m| m.standby_worker.is_some()));
    // The 16 workers of set a (and the pool) play set b: no new JACK client for
    // it, and none closed.
    assert_eq!(
        fx.spawned.len(),
        workers_for_a,
        "no worker started for set b"
    );
    assert!(
        !fx.sent.iter().any(|(_, m)| *m == ToWorker::Shutdown),
        "no freed worker retired while creates needed it"
    );
}

#[test]
fn a_worker_that_fails_to_start_is_retried_and_fails_no_waiting_create() {
    let (mut core, mut fx) = started(1);
    for i in 0..4 {
        osc(
            &mut core,
            &mut fx,
            "/module/new",
            vec![s("lfo"), s(&format!("l{i}"))],
        );
    }
    assert_eq!(core.modules.waiting(), 3);
    // The first start fails (jackd2 busy closing clients: the open timed out).
    let failed = *fx.spawned.last().unwrap();
    let reason = "worker ms-w09 did not connect within 10s (killed by signal 9)";
    core.handle(
        Event::SpawnFailed {
            id: failed,
            reason: reason.into(),
        },
        &mut fx,
    );
    assert!(
        !fx.replies.iter().any(|(_, m)| m.addr == "/fail"),
        "one failed start fails no create: {:?}",
        fx.replies
    );
    let spawned = fx.spawned.len();
    // The retry waits a little (backoff), then starts a fresh worker.
    fx.clock = Some(fx.now() + SPAWN_RETRY_BACKOFF);
    core.tick(&mut fx);
    assert!(fx.spawned.len() > spawned, "the failed start is retried");
    let (mut arrived, mut answered) = (0, HashSet::new());
    arrived += fx.spawned.iter().position(|&w| w == failed).unwrap() + 1;
    // Every worker but the failed one arrives.
    while arrived < fx.spawned.len() {
        let id = fx.spawned[arrived];
        arrived += 1;
        if id != failed {
            ready(&mut core, &mut fx, id);
        }
        ack_new_assigns(&mut core, &mut fx, &mut answered);
    }
    let done = fx.replies.iter().filter(|(_, m)| m.addr == "/done").count();
    assert_eq!(done, 4, "every create played: {:?}", fx.replies);
}

#[test]
fn starts_that_keep_failing_fail_the_waiting_creates_one_at_a_time_each_with_the_reason() {
    let (mut core, mut fx) = started(1);
    create(&mut core, &mut fx, "lfo", "first");
    for i in 0..2 {
        osc(
            &mut core,
            &mut fx,
            "/module/new",
            vec![s("lfo"), s(&format!("l{i}"))],
        );
    }
    let mut failed_at = Vec::new();
    let mut next = 1;
    for _ in 0..40 {
        while next < fx.spawned.len() {
            let id = fx.spawned[next];
            next += 1;
            core.handle(
                Event::SpawnFailed {
                    id,
                    reason: "jack_client_open failed: SERVER_FAILED".into(),
                },
                &mut fx,
            );
            let fails = fx.replies.iter().filter(|(_, m)| m.addr == "/fail").count();
            if fails > failed_at.len() {
                failed_at.push(next);
            }
        }
        fx.clock = Some(fx.now() + SPAWN_RETRY_MAX);
        core.tick(&mut fx);
    }
    let fails: Vec<&OscMessage> = fx
        .replies
        .iter()
        .filter(|(_, m)| m.addr == "/fail")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(fails.len(), 2, "both waiting creates failed in the end");
    assert_ne!(
        failed_at[0], failed_at[1],
        "not together, on the same failure"
    );
    for m in fails {
        assert!(matches!(&m.args[2], T::String(r) if r.contains("SERVER_FAILED")));
    }
    assert!(
        core.modules.contains_key("first"),
        "the playing module is untouched"
    );
    let spawned = fx.spawned.len();
    fx.clock = Some(fx.now() + Duration::from_secs(10));
    core.tick(&mut fx);
    assert_eq!(
        fx.spawned.len(),
        spawned,
        "with nothing waiting the pool stops trying"
    );
}

#[test]
fn a_create_waiting_past_the_limit_fails_alone_with_the_last_start_failure() {
    let (mut core, mut fx) = started(1);
    fx.clock = Some(fx.now());
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("a")]);
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("b")]);
    fx.clock = Some(fx.now() + Duration::from_secs(1));
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("c")]);
    let id = *fx.spawned.last().unwrap();
    core.handle(
        Event::SpawnFailed {
            id,
            reason: "did not connect within 10s".into(),
        },
        &mut fx,
    );
    fx.clock = Some(fx.now() + CREATE_WAIT_LIMIT - Duration::from_millis(500));
    core.tick(&mut fx);
    let fails: Vec<&OscMessage> = fx
        .replies
        .iter()
        .filter(|(_, m)| m.addr == "/fail")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        fails.len(),
        1,
        "only the create past its deadline: {fails:?}"
    );
    assert_eq!(fails[0].args[1], s("b"));
    assert!(matches!(&fails[0].args[2], T::String(r) if r.contains("did not connect")));
}

#[test]
fn a_create_whose_worker_dies_during_it_is_tried_once_more_on_another_worker() {
    let (mut core, mut fx) = started(3);
    osc(
        &mut core,
        &mut fx,
        "/module/new",
        vec![
            s("lfo"),
            s("l"),
            s("standby"),
            s("none"),
            s("rate"),
            T::Float(3.0),
        ],
    );
    let (first, _, _, _) = last_assign(&fx, "l");
    core.handle(Event::WorkerGone(first), &mut fx);
    assert!(
        !fx.replies.iter().any(|(_, m)| m.addr == "/fail"),
        "one dead worker fails no create: {:?}",
        fx.replies
    );
    let (second, token, _, _) = last_assign(&fx, "l");
    assert_ne!(second, first, "another worker took it");
    let rate = catalog::module("lfo").unwrap().param_index("rate").unwrap();
    assert_eq!(
        core.modules["l"].params[rate], 3.0,
        "with the same parameters"
    );
    // A second death in a row fails it: a module that crashes every worker it
    // starts on must not eat the pool.
    core.handle(Event::WorkerGone(second), &mut fx);
    let (addr, args) = last_reply(&fx);
    assert_eq!((addr.as_str(), &args[1]), ("/fail", &s("l")));
    assert!(matches!(&args[2], T::String(r) if r.contains("twice")));
    assert!(!core.modules.contains_key("l"));
    let _ = token;
}
