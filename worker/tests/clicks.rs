//! No parameter change clicks: every continuous parameter of every module is stepped
//! between the ends of its range while the module plays, through the real engine
//! (scheduled changes, periods of 256), and the largest sample-to-sample step of the
//! output must stay within 2x of the largest step the same patch makes with the
//! parameter held at either end. Without smoothing, a gain step on a 220 Hz sine made
//! a step 34.7x the sine's own (issue 13).

use modsynth_model::catalog::{self, ModuleSpec, ParamSpec, Signal};
use modsynth_worker::dsp::Module;
use modsynth_worker::engine::{self, Buffers};

const SR: f32 = 48_000.0;
const N: usize = 256;
/// One second: eight changes, 120 ms apart, as in the report.
const PERIODS: usize = 188;
const FIRST_CHANGE: usize = 4_800;
const EVERY: usize = 5_760;

/// What plays into input `port` at sample `i`: a 220 Hz sine of 0.5 into audio
/// inputs, a gate of 100 ms on, 100 ms off into gates, and into CV inputs a slow
/// sine (so `fm_depth` has something to scale); `vcf.cutoff_cv` gets nothing, so the
/// cutoff under test is the cutoff heard.
fn input(spec: &ModuleSpec, port: usize, i: usize) -> f32 {
    let p = spec.input_ports().nth(port).unwrap();
    let t = i as f32 / SR;
    match (p.signal, spec.name) {
        (Signal::Audio, _) => 0.5 * (std::f32::consts::TAU * 220.0 * t).sin(),
        (Signal::Gate, _) => (i / 4_800).is_multiple_of(2) as u8 as f32,
        (Signal::Cv, "vco") => 0.1 * (std::f32::consts::TAU * 3.0 * t).sin(),
        (Signal::Cv, _) => 0.0,
        (Signal::Midi, _) => unreachable!("a MIDI port is not among the audio inputs"),
    }
}

/// Settings that make the parameter under test audible: `pw` only shapes a square,
/// and an LFO's own motion at 1 Hz is slower than any ramp a knob could have.
fn context(spec: &ModuleSpec) -> Vec<(&'static str, f32)> {
    match spec.name {
        "vco" => vec![("freq", 220.0), ("wave", 2.0)],
        "lfo" => vec![("rate", 100.0), ("depth", 8.0)],
        _ => vec![],
    }
}

/// Renders a second of `spec` with `param` starting at `start`, and `changes`
/// (sample, value) scheduled through the engine. Returns the first output.
fn render(
    spec: &'static ModuleSpec,
    param: usize,
    start: f32,
    changes: &[(usize, f32)],
) -> Vec<f32> {
    let (mut c, mut e) = engine::new::<Buffers>(64);
    let mut module = Module::new(spec, SR);
    for (name, value) in context(spec) {
        module.init_param(spec.param_index(name).unwrap(), value);
    }
    module.init_param(param, start);
    let fill = |ports: &mut Buffers, period: usize| {
        for (k, buf) in ports.inputs.iter_mut().enumerate() {
            for (j, s) in buf.iter_mut().enumerate() {
                *s = input(spec, k, period * N + j);
            }
        }
    };
    let mut ports = Buffers::new(spec, N);
    fill(&mut ports, 0);
    c.install(module, ports).unwrap();
    for &(at, value) in changes {
        c.set_param(param, value, Some(at as u32)).unwrap();
    }
    let mut out = Vec::with_capacity(PERIODS * N);
    for period in 0..PERIODS {
        e.process((period * N) as u32, N, &());
        out.extend_from_slice(&e.ports().unwrap().outputs[0]);
        fill(e.ports_mut().unwrap(), period + 1);
    }
    assert!(out.iter().all(|v| v.is_finite()));
    out
}

fn largest_step(signal: &[f32]) -> f32 {
    signal
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max)
}

/// Steps between the two ends of `p`'s range, starting at the minimum.
fn steps(p: &ParamSpec) -> Vec<(usize, f32)> {
    (0..)
        .map(|k| FIRST_CHANGE + k * EVERY)
        .take_while(|&at| at < PERIODS * N)
        .enumerate()
        .map(|(k, at)| (at, if k % 2 == 0 { p.max } else { p.min }))
        .collect()
}

/// Parameters whose change is a jump by design: a sequencer's steps and timing, a
/// noise seed (a new sequence), a manual gate (a trigger).
fn jumps_by_meaning(module: &str, param: &str) -> bool {
    module == "seq" || (module, param) == ("noise", "seed") || (module, param) == ("adsr", "gate")
}

#[test]
fn stepping_any_continuous_parameter_end_to_end_never_clicks() {
    let mut failures = Vec::new();
    for spec in catalog::modules() {
        for (index, p) in spec.params.iter().enumerate() {
            // Every continuous parameter, smoothed or not (envelope times and curve
            // jump, but only bend a slope), except those whose meaning is a jump.
            if p.is_enum() || jumps_by_meaning(spec.name, p.name) {
                continue;
            }
            let own = largest_step(&render(spec, index, p.min, &[])).max(largest_step(&render(
                spec,
                index,
                p.max,
                &[],
            )));
            let stepped = largest_step(&render(spec, index, p.min, &steps(p)));
            // A constant has no motion of its own: there the measure is the glide
            // itself, which must spread the jump over the whole declared ramp.
            let limit = if own == 0.0 {
                let ramp = p.smoothing.samples(p.min, p.max, SR) as f32;
                (p.max - p.min) / ramp * 1.001
            } else {
                2.0 * own
            };
            eprintln!(
                "{}.{}: largest step {stepped:.5}, held {own:.5} ({:.2}x), limit {limit:.5}",
                spec.name,
                p.name,
                if own > 0.0 { stepped / own } else { f32::NAN }
            );
            if stepped > limit {
                failures.push(format!("{}.{}", spec.name, p.name));
            }
        }
    }
    assert!(failures.is_empty(), "clicks: {failures:?}");
}

/// The case, exactly: a 220 Hz sine of 0.5 through a vca, gain 0 and 1 in
/// turn every 120 ms. It was 34.7x the sine's own step.
#[test]
fn vca_gain_steps_on_a_sine_stay_within_twice_its_own_slope() {
    let spec = catalog::module("vca").unwrap();
    let gain = spec.param_index("gain").unwrap();
    let changes: Vec<(usize, f32)> = (0..8)
        .map(|k| (FIRST_CHANGE + k * EVERY, if k % 2 == 0 { 1.0 } else { 0.0 }))
        .collect();
    let out = render(spec, gain, 0.0, &changes);
    let sine_step = 0.5 * (std::f32::consts::TAU * 220.0 / SR);
    let ratio = largest_step(&out) / sine_step;
    eprintln!("vca gain 0<->1 on a 220 Hz sine: {ratio:.2}x the sine's own step");
    assert!(ratio <= 2.0, "{ratio:.2}x");
    // And it does change: the level reaches both ends.
    let held = &out[FIRST_CHANGE + 1_000..FIRST_CHANGE + EVERY];
    assert!(held.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.49);
}
