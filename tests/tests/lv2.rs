//! LV2 plugins hosted as modules: real Debian plugins (`swh-lv2`, `mda-lv2`,
//! installed by `scripts/setup`) created over OSC, their parameters validated with
//! the plugin's ranges, enumerations and integer hints, audio through them
//! measured by FFT, a set with a plugin saved and loaded, and the failover of a
//! plugin whose standby runs in lockstep.

use modsynth_control::osc::{message, text};
use modsynth_tests::analysis::{band_energy_db, longest_silent_run, max_step_beyond_slope};
use modsynth_tests::capture::{retake_while_disturbed, Capture};
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use rosc::OscType;
use std::time::Duration;

const RATE: f64 = 48_000.0;
const PATIENCE: Duration = Duration::from_secs(15);
const LOWPASS: &str = "http://plugin.org.uk/swh-plugins/lowpass_iir";
const DELAY: &str = "http://plugin.org.uk/swh-plugins/delay_n";

fn server() -> JackServer {
    JackServer::start().expect("a private JACK server")
}

/// `/module/set id param value` with a text or number value; the `/fail` reason.
fn set_fails(sup: &Supervisor, id: &str, param: &str, value: OscType) -> String {
    sup.client()
        .call_then_sync(message("/module/set", vec![text(id), text(param), value]))
        .expect_err("the value is refused")
}

#[test]
fn an_lv2_lowpass_attenuates_a_high_tone_by_its_cutoff_and_refuses_values_outside_the_plugins_ranges(
) {
    let server = server();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module_without_standby("vco", "tone", &[("freq", 6000.0), ("gain", 0.5)])
        .unwrap();
    // By its short name; cutoff in Hz (the plugin gives it as a fraction of the
    // sample rate, 0.0001..0.45); stages is an integer 1..10.
    sup.new_module_without_standby(
        "lv2:lowpass_iir",
        "lp",
        &[("cutoff", 500.0), ("stages", 2.0)],
    )
    .unwrap();
    sup.connect("tone:out", "lp:input").unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    sup.connect("tone:out", &capture.port(0)).unwrap();
    sup.connect("lp:output", &capture.port(1)).unwrap();

    let attenuation = |capture: &Capture| {
        let (rec, _) = retake_while_disturbed(|| Ok((capture.record(24_000)?, ()))).unwrap();
        let band = |k: usize| band_energy_db(&rec.channels[k][4_800..], RATE, 5_500.0, 6_500.0);
        band(0) - band(1)
    };
    let closed = attenuation(&capture);
    sup.set("lp", "cutoff", 20_000.0).unwrap();
    let open = attenuation(&capture);
    eprintln!("measured: 6 kHz through lowpass_iir: -{closed:.1} dB at 500 Hz cutoff, -{open:.1} dB at 20 kHz");
    // Two stages (4 poles) at 500 Hz: 3.6 octaves below the tone, ~80 dB in theory.
    assert!(
        closed > 40.0,
        "cutoff 500 Hz attenuated 6 kHz by only {closed:.1} dB"
    );
    assert!(open < 6.0, "cutoff 20 kHz attenuated 6 kHz by {open:.1} dB");

    // The plugin's own ranges, as for a built-in module.
    let too_high = set_fails(&sup, "lp", "cutoff", OscType::Float(30_000.0));
    assert!(too_high.contains("out of range"), "{too_high}");
    let too_many = set_fails(&sup, "lp", "stages", OscType::Float(11.0));
    assert!(too_many.contains("1..10"), "{too_many}");
    let unknown = set_fails(&sup, "lp", "resonance", OscType::Float(1.0));
    assert!(unknown.contains("cutoff, stages"), "{unknown}");
    let nan = set_fails(&sup, "lp", "cutoff", OscType::Float(f32::NAN));
    assert!(nan.contains("finite"), "{nan}");

    // An enumeration (mda Leslie's mode: stop, slow, fast) takes its labels.
    sup.new_module_without_standby("lv2:Leslie", "rot", &[])
        .unwrap();
    sup.client()
        .call_then_sync(message(
            "/module/set",
            vec![text("rot"), text("mode"), text("fast")],
        ))
        .unwrap();
    let reply = sup
        .client()
        .query(
            message("/module/get", vec![text("rot"), text("mode")]),
            "/module/value",
        )
        .unwrap();
    assert_eq!(reply.args[2], text("fast"));
    let warp = set_fails(&sup, "rot", "mode", text("warp"));
    assert!(warp.contains("stop, slow, fast"), "{warp}");

    // A plugin modsynth cannot host is refused with the reason.
    let refused = sup
        .client()
        .call(message("/module/new", vec![text("lv2:DX10"), text("dx")]))
        .unwrap_err();
    assert!(refused.contains("atom"), "{refused}");
    let missing = sup
        .client()
        .call(message(
            "/module/new",
            vec![text("lv2:no_such_plugin"), text("x")],
        ))
        .unwrap_err();
    assert!(missing.contains("no LV2 plugin"), "{missing}");
}
