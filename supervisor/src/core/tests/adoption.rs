//! [`Core::adopt`]: a new supervisor rebuilding its state from running workers.

use super::*;

/// A worker as a new supervisor finds it: pid `100 + id`, ports `ms-wNN:p<i>`.
fn found(id: WorkerId, playing: Option<(&str, &str, WorkerRole, bool, Vec<f32>)>) -> AdoptedWorker {
    let (commands, rx) = ipc_channel::ipc::channel().unwrap();
    std::mem::forget(rx);
    AdoptedWorker {
        id,
        pid: 100 + id,
        client: format!("ms-w{id:02}"),
        commands,
        playing: playing.map(|(module, ty, role, owner, params)| {
            let spec = catalog::module(ty).unwrap();
            modsynth_model::protocol::Playing {
                id: module.into(),
                module_type: ty.into(),
                role,
                state: format!("/ms-{module}-state"),
                owner,
                ports: (0..spec.ports.len())
                    .map(|i| format!("ms-w{id:02}:p{i}"))
                    .collect(),
                params,
            }
        }),
    }
}

fn adopting(pool: usize) -> (Core, Fake) {
    let core = Core::new(Config {
        pool,
        instance: "ms".into(),
        restart: RestartPolicy::default(),
        limits: Default::default(),
        placement: Default::default(),
    });
    (core, Fake::default())
}

#[test]
fn adoption_rebuilds_modules_standbys_values_connections_spares_and_counters() {
    let (mut core, mut fx) = adopting(1);
    let vco = catalog::module("vco").unwrap();
    let out = vco.ports.iter().position(|p| p.name == "out").unwrap();
    let freq = vco.param_index("freq").unwrap();
    let mut values = vco.defaults()[..vco.params.len()].to_vec();
    values[freq] = 220.0;
    // osc's output feeds filt's input; the same into filt's standby is a mirror.
    fx.patched
        .push((true, format!("ms-w00:p{out}"), "ms-w02:p0".into()));
    fx.patched
        .push((true, format!("ms-w00:p{out}"), "ms-w03:p0".into()));
    let workers = vec![
        found(0, Some(("osc", "vco", WorkerRole::Primary, true, values))),
        found(
            1,
            Some((
                "osc",
                "vco",
                WorkerRole::Standby { primary_pid: 100 },
                false,
                vec![],
            )),
        ),
        found(2, Some(("filt", "vcf", WorkerRole::Primary, true, vec![]))),
        found(
            3,
            Some((
                "filt",
                "vcf",
                WorkerRole::Standby { primary_pid: 102 },
                false,
                vec![],
            )),
        ),
        found(4, Some(("amp", "vca", WorkerRole::Primary, true, vec![]))),
        found(5, None),
    ];
    let saved = Saved {
        connections: vec![("amp:out".into(), "system:playback_1".into())],
        no_standby: vec!["amp".into()],
        ..Saved::default()
    };
    let counters = Counters {
        creates: 7,
        ..Counters::default()
    };
    core.adopt(workers, saved, Some(counters), &mut fx);
    core.start(&mut fx);

    let osc = &core.modules["osc"];
    assert_eq!((osc.worker, osc.standby_worker), (0, Some(1)));
    assert_eq!(osc.params[freq], 220.0, "the value from the state segment");
    assert_eq!(
        osc.links.iter().collect::<Vec<_>>(),
        vec![&(out, "filt:in".to_string())],
        "the patch from the graph, without the standby's mirror"
    );
    assert_eq!(core.modules["filt"].standby_worker, Some(3));
    // Every link is mirrored onto the standbys (osc's standby into filt's input).
    assert!(fx
        .patched
        .contains(&(true, format!("ms-w01:p{out}"), "ms-w02:p0".to_string())));
    let amp = &core.modules["amp"];
    assert_eq!((amp.standby, amp.standby_worker), (Standby::None, None));
    assert_eq!(
        *core.pool.ready,
        VecDeque::from([5]),
        "the spare is a spare again"
    );
    assert!(core.patch.wanted().contains(&Connection {
        from: "amp:out".into(),
        to: "system:playback_1".into()
    }));
    assert_eq!(core.counters.creates, 7);
    assert!(fx.spawned.is_empty(), "the pool is full: nothing to start");
    assert!(
        fx.sent
            .iter()
            .all(|(_, m)| !matches!(m, ToWorker::Assign { .. })),
        "nothing reassigned: {:?}",
        fx.sent
    );
    // New workers never take an adopted one's name.
    after_refill_delay(&mut core, &mut fx);
    let _ = create(&mut core, &mut fx, "vco", "osc2");
    assert!(fx.spawned.iter().all(|&id| id > 5), "{:?}", fx.spawned);
}

#[test]
fn a_standby_that_took_over_while_no_supervisor_ran_gets_the_names_and_a_new_standby() {
    let (mut core, mut fx) = adopting(1);
    let workers = vec![
        found(
            1,
            Some((
                "osc",
                "vco",
                WorkerRole::Standby { primary_pid: 100 },
                true,
                vec![],
            )),
        ),
        found(5, None),
    ];
    core.adopt(workers, Saved::default(), None, &mut fx);

    assert_eq!(core.modules["osc"].worker, 1);
    assert_eq!(core.counters.failovers, 1);
    assert!(fx
        .sent
        .iter()
        .any(|(w, m)| *w == 1 && *m == ToWorker::TakeNames { id: "osc".into() }));
    assert!(
        fx.sent.iter().any(|(w, m)| *w == 5
            && matches!(
                m,
                ToWorker::Assign {
                    role: WorkerRole::Standby { primary_pid: 101 },
                    ..
                }
            )),
        "the spare becomes the standby of the new primary: {:?}",
        fx.sent
    );
}

#[test]
fn adopted_values_out_of_range_fall_back_to_the_defaults() {
    let (mut core, mut fx) = adopting(1);
    let vco = catalog::module("vco").unwrap();
    let freq = vco.param_index("freq").unwrap();
    let mut values = vco.defaults()[..vco.params.len()].to_vec();
    values[freq] = f32::NAN;
    core.adopt(
        vec![found(
            0,
            Some(("osc", "vco", WorkerRole::Primary, true, values)),
        )],
        Saved::default(),
        None,
        &mut fx,
    );
    assert_eq!(core.modules["osc"].params[freq], vco.defaults()[freq]);
}

#[test]
fn a_prepared_set_survives_a_restart_and_can_still_be_switched_to_but_a_half_built_one_is_freed() {
    let (mut core, mut fx) = adopting(1);
    fx.ports.insert("system:playback_1".into());
    let workers = vec![
        found(0, Some(("osc", "vco", WorkerRole::Primary, true, vec![]))),
        found(
            1,
            Some(("next.osc", "vco", WorkerRole::Primary, true, vec![])),
        ),
        found(
            2,
            Some(("half.osc", "vco", WorkerRole::Primary, true, vec![])),
        ),
    ];
    let saved = Saved {
        connections: vec![("osc:out".into(), "system:playback_1".into())],
        no_standby: vec!["osc".into(), "next.osc".into(), "half.osc".into()],
        prepared: vec![
            SavedPrepared {
                name: "next".into(),
                modules: vec![("osc".into(), "next.osc".into())],
                outside: vec![("next.osc:out".into(), "system:playback_1".into())],
                muted: vec!["next.osc".into()],
                building: false,
            },
            SavedPrepared {
                name: "half".into(),
                modules: vec![
                    ("osc".into(), "half.osc".into()),
                    ("amp".into(), "half.amp".into()),
                ],
                outside: vec![],
                muted: vec![],
                building: true,
            },
        ],
        ..Saved::default()
    };
    core.adopt(workers, saved.clone(), None, &mut fx);
    core.start(&mut fx);
    assert_eq!(
        core.saved().prepared,
        saved.prepared[..1],
        "the whole set is prepared again, the half-built one is gone"
    );
    assert!(!core.modules.contains_key("half.osc"));
    assert!(fx
        .sent
        .iter()
        .any(|(w, m)| *w == 2 && matches!(m, ToWorker::Free { .. })));

    switch_at(&mut core, &mut fx, "next", 1000, 5000);
    assert_eq!(gates(&fx, 0), [(0.0, Some(5000))], "the playing set closes");
    assert_eq!(gates(&fx, 1), [(1.0, Some(5000))], "the prepared one opens");
}

#[test]
fn an_adopted_plugin_keeps_its_state_for_the_standby_made_after_the_adoption() {
    catalog::runtime::set_resolver(fake_plugins);
    let (mut core, mut fx) = adopting(2);
    let state = "<urn:modsynth:state> a <http://lv2plug.in/ns/ext/presets#Preset> .\n";
    let workers = vec![
        found(
            0,
            Some((
                "p",
                "lv2:urn:test:level",
                WorkerRole::Primary,
                true,
                vec![0.5],
            )),
        ),
        found(1, None),
    ];
    let saved = Saved {
        plugin_states: [("p".to_string(), state.to_string())].into(),
        ..Saved::default()
    };
    core.adopt(workers, saved, None, &mut fx);
    core.start(&mut fx);
    assert_eq!(core.modules["p"].plugin_state.as_deref(), Some(state));
    assert_eq!(
        core.saved().plugin_states.get("p").map(String::as_str),
        Some(state),
        "written again for the next supervisor"
    );
    // The standby it lacks is made from the spare, with the state.
    after_refill_delay(&mut core, &mut fx);
    let (wid, _, role, _) = last_assign(&fx, "p");
    assert_eq!(wid, 1);
    assert!(matches!(role, WorkerRole::Standby { .. }));
    assert_eq!(last_plugin_state(&fx, "p").as_deref(), Some(state));
}
