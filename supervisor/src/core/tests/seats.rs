//! Standby hosts: where standbys sit, what a host's death replaces, and the
//! hand-back of a module that failed over into a seat.

use super::*;
use crate::core::seats::{HANDBACK_DEADLINE, HANDBACK_PERIODS};
use crate::placement::Placement;

/// Seats per host in these tests.
const SEATS: u16 = 4;

/// A core with a pool of `n` and `--standby-seats 4`, started: its first spares
/// and host are spawning.
fn seated_core(n: usize) -> (Core, Fake) {
    started_placing(
        n,
        Placement {
            seats_per_host: SEATS,
        },
    )
}

/// A core whose pool of `n` spares is ready, with `--standby-seats 4` and its
/// first host up. Returns the host's id too.
fn started_with_seats(n: usize) -> (Core, Fake, WorkerId) {
    let (mut core, mut fx) = seated_core(n);
    let mut next = 0;
    while next < fx.spawned.len() {
        let id = fx.spawned[next];
        ready(&mut core, &mut fx, id);
        next += 1;
    }
    assert_eq!(fx.hosts_spawned.len(), 1, "one host for a free seat");
    let (host, seats) = fx.hosts_spawned[0];
    assert_eq!(seats, SEATS);
    host_ready(&mut core, &mut fx, host, SEATS);
    (core, fx, host)
}

/// Whether worker `wid` is a seat of host `host`.
fn seat_of(core: &Core, wid: WorkerId, host: WorkerId) -> bool {
    core.workers
        .get(&wid)
        .and_then(|w| w.link.seat)
        .is_some_and(|s| s.host == host)
}

/// What was sent to worker `wid`, in order.
fn sent_to(fx: &Fake, wid: WorkerId) -> Vec<&ToWorker> {
    fx.sent
        .iter()
        .filter(|(w, _)| *w == wid)
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn standbys_sit_in_seats_when_seats_are_on_and_in_spares_when_off() {
    let (mut core, mut fx, host) = started_with_seats(3);
    let (primary, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    assert!(!seat_of(&core, primary, host), "a primary is a worker");
    assert!(seat_of(&core, standby, host), "its standby sits in a seat");
    let (_, _, role, _) = last_assign(&fx, "v");
    assert_eq!(
        role,
        WorkerRole::Standby {
            primary_pid: 100 + primary
        }
    );
    // On the wire the seat's messages go to its host, wrapped.
    let link = &core.workers[&standby].link;
    assert_eq!(link.seat, Some(SeatOf { host, seat: 0 }));
    assert!(matches!(
        link.wrap(ToWorker::Shutdown),
        ToWorker::ToSeat { seat: 0, .. }
    ));
    let report = core.status_report();
    let shown = report.modules[0]
        .standby_worker
        .as_ref()
        .expect("a standby");
    assert_eq!(
        (shown.client.as_str(), shown.pid),
        (format!("ms-w{host:02}").as_str(), 100 + host),
        "a seat shows as its host's client and process"
    );
    assert_eq!((report.standby_hosts, report.free_seats), (1, 3));
    assert_eq!(report.workers, 3 + 1, "processes: the spares and the host");
    let registry = core.registry_view();
    assert!(registry.workers.iter().any(|w| w.pid == 100 + host
        && w.role == RegisteredRole::Standby
        && w.module.as_deref() == Some("v")));

    let (mut core, mut fx) = started(3);
    let (_, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    assert!(core.workers[&standby].link.seat.is_none());
    after_refill_delay(&mut core, &mut fx);
    assert!(fx.hosts_spawned.is_empty(), "no hosts while seats are off");
    assert_eq!(core.status_report().standby_hosts, 0);
}

#[test]
fn a_plugins_standby_never_sits_in_a_seat() {
    catalog::runtime::set_resolver(fake_plugins);
    let (mut core, mut fx, host) = started_with_seats(3);
    let (_, standby) = create_with_standby(&mut core, &mut fx, "lv2:urn:test:level", "p");
    assert!(
        !seat_of(&core, standby, host),
        "lockstep: a worker of its own"
    );
    assert_eq!(core.status_report().free_seats, SEATS as usize);
}

#[test]
fn a_standby_takes_a_spare_when_no_seat_is_free_and_a_new_host_is_started() {
    let (mut core, mut fx, host) = started_with_seats(8);
    for i in 0..SEATS {
        let (_, standby) = create_with_standby(&mut core, &mut fx, "vco", &format!("v{i}"));
        assert!(seat_of(&core, standby, host));
    }
    let (_, standby) = create_with_standby(&mut core, &mut fx, "vco", "last");
    assert!(
        core.workers[&standby].link.seat.is_none(),
        "a spare, as before"
    );
    after_refill_delay(&mut core, &mut fx);
    assert_eq!(
        fx.hosts_spawned.len(),
        2,
        "the pool keeps a free seat ready"
    );
}

#[test]
fn a_hosts_death_replaces_every_standby_that_sat_there() {
    let (mut core, mut fx, host) = started_with_seats(4);
    let (_, a) = create_with_standby(&mut core, &mut fx, "vco", "a");
    let (_, b) = create_with_standby(&mut core, &mut fx, "lfo", "b");
    assert!(seat_of(&core, a, host) && seat_of(&core, b, host));
    let sent = fx.sent.len();
    core.handle(
        Event::WorkerDied {
            id: host,
            how: "killed by signal 9".into(),
        },
        &mut fx,
    );
    core.handle(Event::WorkerGone(host), &mut fx);
    assert_eq!(core.counters.crash_count, 1, "one process died");
    let new_standbys: Vec<(WorkerId, String)> = fx.sent[sent..]
        .iter()
        .filter_map(|(w, m)| match m {
            ToWorker::Assign {
                id,
                role: WorkerRole::Standby { .. },
                ..
            } => Some((*w, id.clone())),
            _ => None,
        })
        .collect();
    let ids: HashSet<&str> = new_standbys.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, HashSet::from(["a", "b"]), "each got a new standby");
    assert!(new_standbys
        .iter()
        .all(|(w, _)| !core.seats.seats_of(host).contains(w) && *w != a && *w != b));
    assert!(!core.workers.contains_key(&a) && !core.workers.contains_key(&host));
    assert_eq!(fx.hosts_spawned.len(), 2, "a new host for a free seat");
}

#[test]
fn a_message_from_a_seat_is_attributed_to_the_seats_module() {
    let (mut core, mut fx, host) = started_with_seats(3);
    let primary = create_with(&mut core, &mut fx, "vco", "v", "hot");
    let (seat, token, _, _) = last_assign(&fx, "v");
    let number = core.workers[&seat].link.seat.unwrap().seat;
    let ports: Vec<String> = catalog::module("vco")
        .unwrap()
        .ports
        .iter()
        .map(|p| format!("ms-w{host:02}:s{number}_{}", p.name))
        .collect();
    let said = |message: FromWorker| {
        Event::FromWorker(
            host,
            FromWorker::FromSeat {
                seat: number,
                message: Box::new(message),
            },
        )
    };
    let assigned = FromWorker::Assigned {
        token,
        result: Ok(ports.clone()),
    };
    core.handle(said(assigned), &mut fx);
    let shown = core.status_report().modules[0].standby_worker.clone();
    assert!(shown.is_some(), "the seat's answer made the standby ready");
    assert_eq!(core.modules["v"].standby_ports, ports);
    core.handle(said(FromWorker::Promoted), &mut fx);
    assert_eq!(fx.killed, vec![primary], "as from any standby");
    // What no seat says, or a seat the host does not have: dropped.
    let sent = fx.sent.len();
    core.handle(said(said_nothing()), &mut fx);
    let elsewhere = FromWorker::FromSeat {
        seat: SEATS + 3,
        message: Box::new(FromWorker::Promoted),
    };
    core.handle(Event::FromWorker(host, elsewhere), &mut fx);
    assert_eq!(fx.sent.len(), sent);
    assert_eq!(fx.killed.len(), 1);
}

/// A nested seat message, which no seat sends.
fn said_nothing() -> FromWorker {
    FromWorker::FromSeat {
        seat: 0,
        message: Box::new(FromWorker::Promoted),
    }
}

/// Creates `v` (a VCO) with its standby in a seat, kills its primary and lets
/// the seat take over; returns (seat, the new standby).
fn failed_over_into_a_seat(core: &mut Core, fx: &mut Fake, host: WorkerId) -> (WorkerId, WorkerId) {
    let (primary, seat) = create_with_standby(core, fx, "vco", "v");
    assert!(seat_of(core, seat, host));
    osc(core, fx, "/v/freq", vec![T::Float(330.0)]);
    core.handle(Event::WorkerGone(primary), fx);
    took_over(core, fx, seat, 0);
    assert_eq!(core.modules["v"].worker, seat, "the seat plays it");
    assert!(sent_to(fx, seat).contains(&&ToWorker::TakeNames { id: "v".into() }));
    let (standby, _, role, _) = last_assign(fx, "v");
    assert!(
        core.workers[&standby].link.seat.is_none(),
        "the standby of a seat is a worker of its own"
    );
    assert_eq!(
        role,
        WorkerRole::Standby {
            primary_pid: 100 + host
        },
        "it watches the host"
    );
    (seat, standby)
}

/// Answers the last Assign of `v` (its standby's).
fn ack_standby(core: &mut Core, fx: &mut Fake) {
    let (standby, token, _, _) = last_assign(fx, "v");
    ack_assign(core, fx, standby, token, catalog::module("vco").unwrap());
}

/// The TakeOverAt frames sent to `wid`.
fn take_overs(fx: &Fake, wid: WorkerId) -> Vec<u32> {
    sent_to(fx, wid)
        .into_iter()
        .filter_map(|m| match m {
            ToWorker::TakeOverAt { at, id } if id == "v" => Some(*at),
            _ => None,
        })
        .collect()
}

#[test]
fn a_seat_promoted_after_its_primary_died_gets_an_ordinary_standby_and_hands_the_module_back() {
    let (mut core, mut fx, host) = started_with_seats(4);
    fx.cycle = Some(50_000);
    fx.ports.insert("system:playback_1".into());
    let (seat, standby) = failed_over_into_a_seat(&mut core, &mut fx, host);
    osc(
        &mut core,
        &mut fx,
        "/patch/connect",
        vec![s("v:out"), s("system:playback_1")],
    );
    assert!(
        take_overs(&fx, standby).is_empty(),
        "not before it is ready"
    );
    ack_standby(&mut core, &mut fx);
    let s_out = format!("ms-w{standby:02}:out");
    assert!(
        fx.patched
            .contains(&(true, s_out, "system:playback_1".into())),
        "mirrored first"
    );
    assert_eq!(
        take_overs(&fx, standby),
        vec![50_000 + HANDBACK_PERIODS * 256],
        "from a frame still to come"
    );
    assert!(!sent_to(&fx, seat)
        .iter()
        .any(|m| matches!(m, ToWorker::StandBy { .. })));
    took_over(&mut core, &mut fx, standby, 0);
    assert_eq!(
        sent_to(&fx, seat).last(),
        Some(&&ToWorker::StandBy {
            primary_pid: 100 + standby
        })
    );
    let m = &core.modules["v"];
    assert_eq!(
        (m.worker, m.standby_worker),
        (standby, Some(seat)),
        "swapped"
    );
    assert!(m.handback.is_none());
    assert!(
        sent_to(&fx, standby).contains(&&ToWorker::SetParam {
            index: 0,
            value: 330.0,
            at: None,
            received: 0
        }),
        "values replayed to the new primary"
    );
    assert_eq!(core.counters.handbacks, 1);
    assert_eq!(core.counters.failovers, 1, "a hand-back is no failover");
    let report = core.status_report();
    assert_eq!(report.modules[0].jack_client, format!("ms-w{standby:02}"));
    let shown = report.modules[0].standby_worker.as_ref().unwrap();
    assert_eq!(shown.pid, 100 + host);
    let roles: Vec<(u32, RegisteredRole)> = core
        .registry_view()
        .workers
        .iter()
        .filter(|w| w.module.as_deref() == Some("v"))
        .map(|w| (w.pid, w.role))
        .collect();
    assert!(roles.contains(&(100 + standby, RegisteredRole::Primary)));
    assert!(roles.contains(&(100 + host, RegisteredRole::Standby)));
    // The seat stands by again: the primary's death fails over into it (not
    // right after a takeover, which would be a crash loop).
    fx.clock = Some(fx.now() + Duration::from_secs(1));
    core.handle(Event::WorkerGone(standby), &mut fx);
    assert_eq!(core.modules["v"].worker, seat);
    assert_eq!(core.counters.failovers, 2);
}

/// A module that failed over into a seat, whose new standby worker has been told
/// to take it back (once): the core, its effects, the seat and that standby.
fn told_to_take_back() -> (Core, Fake, WorkerId, WorkerId) {
    let (mut core, mut fx, host) = started_with_seats(4);
    fx.cycle = Some(50_000);
    let (seat, standby) = failed_over_into_a_seat(&mut core, &mut fx, host);
    ack_standby(&mut core, &mut fx);
    assert_eq!(take_overs(&fx, standby).len(), 1);
    (core, fx, seat, standby)
}

#[test]
fn a_standby_that_dies_before_it_took_the_module_back_leaves_the_seat_playing_it() {
    let (mut core, mut fx, seat, standby) = told_to_take_back();
    core.handle(Event::WorkerGone(standby), &mut fx);
    assert_eq!(core.modules["v"].worker, seat, "still the seat's");
    assert!(core.modules["v"].handback.is_none());
    assert!(
        sent_to(&fx, seat).contains(&&ToWorker::TakeNames { id: "v".into() }),
        "the seat takes back what the dead standby may have owned already"
    );
    let (next, _, _, _) = last_assign(&fx, "v");
    assert!(next != standby && core.workers[&next].link.seat.is_none());
    fx.cycle = Some(60_000);
    ack_standby(&mut core, &mut fx);
    assert_eq!(
        take_overs(&fx, next),
        vec![60_000 + HANDBACK_PERIODS * 256],
        "the cycle starts again"
    );
    took_over(&mut core, &mut fx, standby, 0);
    assert_eq!(
        core.modules["v"].worker, seat,
        "the dead one's word is void"
    );
}

#[test]
fn a_standby_that_does_not_take_the_module_back_in_time_is_killed_and_the_seat_takes_it_back() {
    let (mut core, mut fx, seat, standby) = told_to_take_back();
    fx.clock = Some(fx.now() + HANDBACK_DEADLINE / 2);
    core.tick(&mut fx);
    assert!(!fx.killed.contains(&standby), "not yet");
    fx.clock = Some(fx.now() + HANDBACK_DEADLINE);
    core.tick(&mut fx);
    assert_eq!(fx.killed, vec![standby], "hung: killed, once");
    core.tick(&mut fx);
    assert_eq!(fx.killed.len(), 1);
    core.handle(Event::WorkerGone(standby), &mut fx);
    assert_eq!(core.modules["v"].worker, seat);
    assert!(sent_to(&fx, seat).contains(&&ToWorker::TakeNames { id: "v".into() }));
}

#[test]
fn a_module_playing_in_a_seat_fails_over_to_its_standby_when_the_host_dies() {
    let (mut core, mut fx, host) = started_with_seats(4);
    fx.cycle = Some(50_000);
    let (_, standby) = failed_over_into_a_seat(&mut core, &mut fx, host);
    ack_standby(&mut core, &mut fx);
    fx.clock = Some(fx.now() + Duration::from_secs(1));
    core.handle(Event::WorkerGone(host), &mut fx);
    let m = &core.modules["v"];
    assert_eq!(m.worker, standby);
    assert!(m.handback.is_none());
    assert_eq!(core.counters.failovers, 2);
    assert!(sent_to(&fx, standby).contains(&&ToWorker::TakeNames { id: "v".into() }));
    // Its TookOver ends the failover, as any standby's.
    took_over(&mut core, &mut fx, standby, 0);
    assert_eq!(core.counters.handbacks, 0);
    assert_eq!(core.modules["v"].worker, standby);
}

#[test]
fn seats_are_never_given_as_primaries_or_replacements() {
    let (mut core, mut fx, host) = started_with_seats(1);
    let a = create(&mut core, &mut fx, "vco", "a");
    osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("b")]);
    assert!(fx
        .replies
        .iter()
        .all(|(_, m)| m.args.get(1) != Some(&s("b"))));
    core.handle(Event::WorkerGone(a), &mut fx);
    let to_seats: Vec<&ToWorker> = fx
        .sent
        .iter()
        .filter(|(w, _)| seat_of(&core, *w, host))
        .map(|(_, m)| m)
        .collect();
    assert!(to_seats.is_empty(), "{to_seats:?}");
    assert_eq!(core.status_report().free_seats, SEATS as usize);
    // The next spare serves them.
    let next = *fx.spawned.last().unwrap();
    ready(&mut core, &mut fx, next);
    let (wid, _, role, _) = last_assign(&fx, "a");
    assert_eq!((wid, role), (next, WorkerRole::Replacement));
}

#[test]
fn shutdown_stops_a_host_as_one_worker_and_its_seats_go_with_it() {
    let (mut core, mut fx, host) = started_with_seats(1);
    let (_, seat) = create_with_standby(&mut core, &mut fx, "vco", "v");
    core.handle(Event::Shutdown, &mut fx);
    let stopped: Vec<WorkerId> = fx
        .sent
        .iter()
        .filter(|(_, m)| *m == ToWorker::Shutdown)
        .map(|(w, _)| *w)
        .collect();
    assert!(!stopped.contains(&seat), "a seat cannot stop alone");
    for w in core.workers.keys().copied().collect::<Vec<_>>() {
        if core.workers.get(&w).is_some_and(|w| w.link.seat.is_none()) {
            core.handle(Event::WorkerGone(w), &mut fx);
        }
    }
    assert!(fx.sent.contains(&(host, ToWorker::Shutdown)), "the host is");
    assert!(core.is_stopped(), "its seats went with it");
}

#[test]
fn a_host_that_comes_up_without_seats_is_retired_and_no_more_are_started() {
    let (mut core, mut fx) = seated_core(1);
    let first = fx.spawned[0];
    ready(&mut core, &mut fx, first);
    let (host, _) = fx.hosts_spawned[0];
    host_ready(&mut core, &mut fx, host, 0);
    assert!(fx.sent.contains(&(host, ToWorker::Shutdown)));
    let (_, standby) = create_with_standby(&mut core, &mut fx, "vco", "v");
    assert!(core.workers[&standby].link.seat.is_none());
    after_refill_delay(&mut core, &mut fx);
    assert_eq!(fx.hosts_spawned.len(), 1, "an old worker binary: seats off");
}
