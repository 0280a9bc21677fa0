//! Playing a set list: a prepared set runs silently under its own ids, a switch
//! moves every gate on one frame and then renames; an atomic load that fails
//! leaves everything as it was.

use super::*;

/// A set of one VCO `osc` at `freq` patched to `system:playback_1`.
fn one_vco(freq: u32) -> String {
    format!(
        "[[module]]\nid = \"osc\"\ntype = \"vco\"\nstandby = \"none\"\nparams = {{ freq = {freq} }}\n\n\
         [[connect]]\nfrom = \"osc:out\"\nto = \"system:playback_1\"\n"
    )
}

/// Answers the last Assign of module `id`; returns its worker.
fn ack(core: &mut Core, fx: &mut Fake, id: &str) -> WorkerId {
    let (wid, token, _, _) = last_assign(fx, id);
    ack_assign(core, fx, wid, token, catalog::module("vco").unwrap());
    wid
}

fn connected_to_playback(fx: &Fake, wid: WorkerId) -> bool {
    fx.patched
        .iter()
        .any(|(c, s, d)| *c && *s == format!("ms-w{wid:02}:out") && d == "system:playback_1")
}

/// Set `a` (a VCO at 220 Hz into `system:playback_1`) playing; `b` (330 Hz) on file.
/// Returns the worker playing `a`'s `osc`.
fn a_playing(core: &mut Core, fx: &mut Fake) -> WorkerId {
    fx.ports.insert("system:playback_1".into());
    fx.files.insert("a.toml".into(), one_vco(220));
    fx.files.insert("b.toml".into(), one_vco(330));
    osc(core, fx, "/set/load", vec![s("a.toml")]);
    let old = ack(core, fx, "osc");
    assert!(connected_to_playback(fx, old));
    old
}

#[test]
fn a_prepared_set_plays_muted_under_its_own_ids_and_a_switch_swaps_gates_on_one_frame_then_renames()
{
    let (mut core, mut fx) = started(4);
    let old = a_playing(&mut core, &mut fx);
    assert!(connected_to_playback(&fx, old));

    osc(&mut core, &mut fx, "/set/prepare", vec![s("b.toml")]);
    let new = ack(&mut core, &mut fx, "b.osc");
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/set/prepare"), s("b")])
    );
    assert_eq!(gates(&fx, new), [(0.0, None)], "its output muted at once");
    assert!(
        !connected_to_playback(&fx, new),
        "nothing outside before the switch"
    );
    assert_eq!(gates(&fx, old), []);
    // Not part of the patch until its switch: a save leaves it out, a replace
    // leaves it alone.
    osc(&mut core, &mut fx, "/set/save", vec![s("saved.toml")]);
    assert!(
        !fx.files["saved.toml"].contains("b.osc"),
        "{}",
        fx.files["saved.toml"]
    );
    osc(
        &mut core,
        &mut fx,
        "/set/load",
        vec![s("a.toml"), T::Int(1)],
    );
    assert!(core.modules.contains_key("b.osc"));

    switch_at(&mut core, &mut fx, "b", 1000, 5000);
    assert!(connected_to_playback(&fx, new), "connected, still muted");
    assert_eq!(gates(&fx, old), [(0.0, Some(5000))]);
    assert_eq!(gates(&fx, new), [(0.0, None), (1.0, Some(5000))]);
    // Nothing is freed or renamed before the frame has passed.
    core.tick(&mut fx);
    fx.cycle = Some(5000);
    fx.clock = Some(fx.now() + Duration::from_secs(1));
    core.tick(&mut fx);
    assert!(!fx
        .sent
        .iter()
        .any(|(w, m)| *w == old && matches!(m, ToWorker::Free { .. })));
    // A period past it, and the fade over: the old set goes, the new takes its ids.
    fx.cycle = Some(5000 + 256);
    for _ in 0..3 {
        fx.clock = Some(fx.now() + Duration::from_millis(50));
        core.tick(&mut fx);
    }
    assert!(fx
        .sent
        .iter()
        .any(|(w, m)| *w == old && matches!(m, ToWorker::Free { .. })));
    assert!(fx
        .sent
        .iter()
        .any(|(w, m)| *w == new && *m == ToWorker::Rename { id: "osc".into() }));
    assert_eq!(
        last_reply(&fx),
        ("/done".into(), vec![s("/set/switch"), s("b"), T::Int(5000)])
    );
    assert_eq!(core.modules.keys().collect::<Vec<_>>(), ["osc"]);
    assert_eq!(core.modules["osc"].worker, new);
    assert!(core.patch.wanted().contains(&Connection {
        from: "osc:out".into(),
        to: "system:playback_1".into()
    }));
    // The set can be prepared again under the same name: a fresh segment name,
    // since the renamed module still holds `/ms-b.osc-state`.
    osc(
        &mut core,
        &mut fx,
        "/set/prepare",
        vec![s("a.toml"), s("b")],
    );
    let (_, _, _, state) = last_assign(&fx, "b.osc");
    assert_eq!(state, "/ms-b.osc.2-state");
}

#[test]
fn a_spare_replacing_a_module_in_the_switch_window_gets_the_gate_its_set_gets() {
    let (mut core, mut fx) = started(4);
    let old = a_playing(&mut core, &mut fx);
    osc(&mut core, &mut fx, "/set/prepare", vec![s("b.toml")]);
    let new = ack(&mut core, &mut fx, "b.osc");
    switch_at(&mut core, &mut fx, "b", 1000, 5000);
    // Both crash before the frame; spares take their modules over.
    core.handle(Event::WorkerGone(new), &mut fx);
    let (incoming, ..) = last_assign(&fx, "b.osc");
    assert_ne!(incoming, new);
    assert_eq!(
        gates(&fx, incoming),
        [(0.0, None), (1.0, Some(5000))],
        "silent until the frame, then open with the rest of its set"
    );
    core.handle(Event::WorkerGone(old), &mut fx);
    let (outgoing, ..) = last_assign(&fx, "osc");
    assert_ne!(outgoing, old);
    assert_eq!(
        gates(&fx, outgoing),
        [(0.0, Some(5000))],
        "closing on the frame with the rest of its set"
    );
}

#[test]
fn a_switch_is_refused_while_its_set_is_being_prepared_or_unknown() {
    let (mut core, mut fx) = started(2);
    fx.cycle = Some(1000);
    fx.files.insert("b.toml".into(), one_vco(330));
    osc(&mut core, &mut fx, "/set/switch", vec![s("b")]);
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/fail");
    assert!(format!("{args:?}").contains("none is"), "{args:?}");
    osc(&mut core, &mut fx, "/set/prepare", vec![s("b.toml")]);
    osc(&mut core, &mut fx, "/set/switch", vec![s("b")]);
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/fail");
    assert!(
        format!("{args:?}").contains("still being prepared"),
        "{args:?}"
    );
}

#[test]
fn an_atomic_load_with_a_failed_create_frees_what_it_created_and_changes_nothing_else() {
    let (mut core, mut fx) = started(4);
    let keep = create(&mut core, &mut fx, "vco", "keep");
    let sent_to_keep = fx.sent.iter().filter(|(w, _)| *w == keep).count();
    fx.files.insert(
        "next.toml".into(),
        "[[module]]\nid = \"keep\"\ntype = \"vco\"\nstandby = \"none\"\nparams = { freq = 330 }\n\n\
         [[module]]\nid = \"n1\"\ntype = \"vco\"\nstandby = \"none\"\n\n\
         [[module]]\nid = \"n2\"\ntype = \"vco\"\nstandby = \"none\"\n\n\
         [[connect]]\nfrom = \"n1:out\"\nto = \"keep:fm\"\n"
            .into(),
    );
    osc(
        &mut core,
        &mut fx,
        "/set/load",
        vec![s("next.toml"), T::Int(1), T::Int(1)],
    );
    let n1 = ack(&mut core, &mut fx, "n1");
    let (n2, token, _, _) = last_assign(&fx, "n2");
    core.handle(
        Event::FromWorker(
            n2,
            FromWorker::Assigned {
                token,
                result: Err("no room".into()),
            },
        ),
        &mut fx,
    );
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/fail");
    assert!(
        format!("{args:?}").contains("nothing was changed"),
        "{args:?}"
    );
    assert_eq!(core.modules.keys().collect::<Vec<_>>(), ["keep"]);
    assert!(fx
        .sent
        .iter()
        .any(|(w, m)| *w == n1 && matches!(m, ToWorker::Free { .. })));
    assert_eq!(
        fx.sent.iter().filter(|(w, _)| *w == keep).count(),
        sent_to_keep,
        "keep was not touched (no new freq)"
    );
    assert!(core.patch.wanted().is_empty(), "{:?}", core.patch.wanted());
    assert!(fx.patched.is_empty(), "{:?}", fx.patched);
}

#[test]
fn a_switch_on_a_bar_asks_the_playing_seq_where_it_is_and_lands_on_that_bars_frame() {
    let (mut core, mut fx) = started(4);
    let old = a_playing(&mut core, &mut fx);
    osc(&mut core, &mut fx, "/set/prepare", vec![s("b.toml")]);
    ack(&mut core, &mut fx, "b.osc");
    fx.cycle = Some(1000);
    let on_bar = |n: i32| vec![s("b"), T::Int(0), s("bar"), T::Int(n)];
    // No seq plays: refused with the reason, nothing switches.
    osc(&mut core, &mut fx, "/set/switch", on_bar(2));
    let (addr, args) = last_reply(&fx);
    assert_eq!(addr, "/fail");
    assert!(
        matches!(&args[1], T::String(r) if r.contains("no seq module plays")),
        "{args:?}"
    );
    assert_eq!(gates(&fx, old), []);

    // A seq plays (a standby would give it a state segment; here it is named).
    osc(
        &mut core,
        &mut fx,
        "/module/new",
        vec![s("seq"), s("clock"), s("steps"), T::Float(4.0)],
    );
    let (seq, token, _, _) = last_assign(&fx, "clock");
    ack_assign(
        &mut core,
        &mut fx,
        seq,
        token,
        catalog::module("seq").unwrap(),
    );
    core.modules.get_mut("clock").unwrap().state = "/ms-clock-state".into();
    osc(&mut core, &mut fx, "/set/switch", on_bar(2));
    let asked = fx.sent.iter().rev().find_map(|(w, m)| match m {
        ToWorker::SeqPosition { token } if *w == seq => Some(*token),
        _ => None,
    });
    let token = asked.expect("the seq's worker is asked where it is");
    // 240 steps a minute at 48 kHz: 12_000 samples a step; 3 steps played at
    // frame 1000, so bar 2 (step 4) begins 12_000 frames later.
    let position = modsynth_model::protocol::SeqPosition {
        frame: 1000,
        samples: 36_000,
        origin: 0.0,
        rate: 240.0,
        sample_rate: 48_000.0,
    };
    core.handle(
        Event::FromWorker(
            seq,
            FromWorker::SeqPosition {
                token,
                position: Some(position),
            },
        ),
        &mut fx,
    );
    assert_eq!(
        gates(&fx, old),
        [(0.0, Some(13_000))],
        "the old set closes on bar 2"
    );
}
