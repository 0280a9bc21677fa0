//! Offline tests of the kernels (the JACK-level tests in `tests/` record real ports).

use super::{Io, Module};
use modsynth_model::catalog;

const SR: f32 = 48_000.0;

fn module(name: &str, params: &[(&str, f32)]) -> Module {
    let spec = catalog::module(name).unwrap();
    let mut m = Module::new(spec, SR);
    for (p, v) in params {
        m.init_param(spec.param_index(p).unwrap(), *v);
    }
    m
}

fn noise_input(n: usize) -> Vec<f32> {
    module("noise", &[("gain", 1.0)]).render(&[], n).remove(0)
}

#[test]
fn splitting_a_period_does_not_change_the_output() {
    let input = noise_input(1024);
    for spec in catalog::modules() {
        let inputs: Vec<&[f32]> = spec.input_ports().map(|_| &input[..]).collect();
        // Every smoothed parameter gliding from the first sample: glides too must not
        // depend on where a period is split.
        let gliding = || {
            let mut m = Module::new(spec, SR);
            for (i, p) in spec.params.iter().enumerate() {
                if p.is_smoothed() {
                    m.set_param(i, p.min + 0.6 * (p.max - p.min));
                }
            }
            m
        };
        // MIDI on the frames the period is split at, and between them.
        let mut midi = crate::midi::MidiEvents::new();
        if spec.midi_input().is_some() {
            for (frame, bytes) in [
                (1, [0x90, 60, 100]),
                (7, [0x90, 64, 90]),
                (100, [0xE0, 0, 0x50]),
                (256, [0x80, 64, 0]),
                (299, [0x90, 67, 20]),
                (300, [0xB0, 1, 90]),
                (1023, [0x80, 60, 0]),
            ] {
                midi.push(frame, &bytes, 1024);
            }
        }
        let midi = midi.as_slice();
        let whole = gliding().render_with_midi(&inputs, midi, 1024);
        let mut split = gliding();
        let mut outs = vec![vec![0.0f32; 1024]; whole.len()];
        let bounds = [0, 1, 7, 256, 300, 1023, 1024];
        for w in bounds.windows(2) {
            let mut io = Io::empty();
            for (slot, buf) in io.inputs.iter_mut().zip(&inputs) {
                *slot = buf;
            }
            for (slot, buf) in io.outputs.iter_mut().zip(outs.iter_mut()) {
                *slot = &mut buf[..];
            }
            io.midi = midi;
            split.process(&mut io, w[0]..w[1]);
        }
        for (k, o) in whole.iter().enumerate() {
            assert!(
                o.iter()
                    .zip(&outs[k])
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} output {k} differs when the period is split",
                spec.name
            );
        }
    }
}

#[test]
fn vcf_at_maximum_resonance_stays_finite_and_bounded_for_ten_seconds() {
    let noise = noise_input(10 * SR as usize);
    let square: Vec<f32> = (0..10 * SR as usize)
        .map(|i| if (i / 55) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    for mode in ["lowpass", "bandpass", "highpass"] {
        let mode_index = catalog::vcf::FILTER_MODES
            .iter()
            .position(|m| *m == mode)
            .unwrap() as f32;
        for input in [&noise, &square] {
            let mut f = module(
                "vcf",
                &[("mode", mode_index), ("cutoff", 440.0), ("resonance", 1.0)],
            );
            let out = f.render(&[input], input.len()).remove(0);
            let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak.is_finite() && peak < 200.0, "{mode}: peak {peak}");
            let tail = &out[out.len() - 48_000..];
            assert!(tail.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn noise_with_the_same_seed_repeats_and_a_new_seed_changes_it() {
    let a = module("noise", &[("seed", 7.0)]).render(&[], 512).remove(0);
    let b = module("noise", &[("seed", 7.0)]).render(&[], 512).remove(0);
    let c = module("noise", &[("seed", 8.0)]).render(&[], 512).remove(0);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|v| v.abs() <= 0.5), "amplitude is the gain");
    let mean = a.iter().sum::<f32>() / a.len() as f32;
    assert!(mean.abs() < 0.05, "white noise has no DC ({mean})");
}

#[test]
fn lfo_output_spans_offset_plus_minus_depth() {
    let out = module(
        "lfo",
        &[
            ("rate", 10.0),
            ("depth", 2.0),
            ("offset", 1.0),
            ("wave", 3.0),
        ],
    )
    .render(&[], 4800)
    .remove(0);
    let (lo, hi) = out
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(
        (lo + 1.0).abs() < 0.01 && (hi - 3.0).abs() < 0.01,
        "{lo}..{hi}"
    );
}

#[test]
fn adsr_retriggered_during_release_attacks_from_where_it_was() {
    let mut gate = vec![1.0f32; 2400];
    gate.extend(vec![0.0; 480]);
    gate.extend(vec![1.0; 480]);
    let out = module(
        "adsr",
        &[
            ("attack", 0.01),
            ("decay", 0.01),
            ("release", 0.1),
            ("sustain", 0.5),
        ],
    )
    .render(&[&gate], gate.len())
    .remove(0);
    let at_retrigger = out[2400 + 479];
    assert!(
        at_retrigger > 0.2 && at_retrigger < 0.5,
        "mid-release level {at_retrigger}"
    );
    assert!(
        out[2400 + 480] > at_retrigger,
        "attack restarts from the current level, no click to 0"
    );
}

#[test]
fn seq_continues_from_its_position_when_the_tempo_changes() {
    let mut seq = module("seq", &[("bpm", 120.0), ("div", 4.0), ("steps", 16.0)]);
    for k in 0..16 {
        seq.set_param(4 + k, k as f32 / 4.0);
    }
    // 120 bpm * 4 = a step every 6000 samples; render into step 3.
    let first = seq.render(&[], 20_000);
    assert_eq!(first[0][19_999], 0.75);
    seq.set_param(0, 240.0);
    let after = seq.render(&[], 1);
    assert_eq!(
        after[0][0], 0.75,
        "still on step 4 right after the change, not back at 1"
    );
}

#[test]
fn delay_time_zero_is_a_wire_and_feedback_repeats_decaying() {
    let mut impulse = vec![0.0f32; 2000];
    impulse[0] = 1.0;
    let wire = module("delay", &[("time", 0.0), ("mix", 1.0)])
        .render(&[&impulse], 2000)
        .remove(0);
    assert_eq!(wire, impulse);
    let echo = module("delay", &[("time", 0.01), ("feedback", 0.5), ("mix", 1.0)])
        .render(&[&impulse], 2000)
        .remove(0);
    assert_eq!((echo[480], echo[960], echo[1440]), (1.0, 0.5, 0.25));
}

#[test]
fn a_fractional_delay_puts_an_impulse_between_samples() {
    let mut impulse = vec![0.0f32; 2000];
    impulse[0] = 1.0;
    let samples = 590.4f32;
    let out = module(
        "delay",
        &[("time", samples / SR), ("feedback", 0.0), ("mix", 1.0)],
    )
    .render(&[&impulse], 2000)
    .remove(0);
    // Cubic interpolation spreads it over the four neighbours of 590.4, weighted
    // around 590.4: its centre of mass is there, and it keeps its level.
    let around = &out[589..593];
    assert!(out[..589].iter().chain(&out[593..]).all(|&v| v == 0.0));
    let sum: f32 = around.iter().sum();
    let centre: f32 = around
        .iter()
        .enumerate()
        .map(|(k, v)| (589 + k) as f32 * v)
        .sum::<f32>()
        / sum;
    assert!((sum - 1.0).abs() < 1e-4, "level {sum}");
    assert!((centre - samples).abs() < 0.01, "centre {centre}");
}

#[test]
fn sweeping_the_delay_time_glides_the_pitch_instead_of_skipping_samples() {
    // A 1 kHz sine; time set from 10 ms to 100 ms: it glides at 0.5 s per second,
    // so the line is read at half speed: the wet signal plays an octave down while
    // the time moves, with no sample skipped or repeated.
    let n = 48_000;
    let sine: Vec<f32> = (0..n)
        .map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / SR).sin())
        .collect();
    let mut d = module("delay", &[("time", 0.01), ("feedback", 0.0), ("mix", 1.0)]);
    let before = d.render(&[&sine[..9600]], 9600).remove(0);
    d.set_param(0, 0.1);
    let during = d.render(&[&sine[9600..19_200]], 9600).remove(0);
    let hz = |x: &[f32]| {
        let crossings = x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        crossings as f32 * SR / x.len() as f32
    };
    let (f_before, f_during) = (hz(&before[4800..]), hz(&during[..4800]));
    assert!((f_before - 1000.0).abs() < 15.0, "{f_before} Hz before");
    assert!(
        (f_during - 500.0).abs() < 15.0,
        "{f_during} Hz while the time glides"
    );
    let largest = during
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0f32, f32::max);
    let own = std::f32::consts::TAU * 1000.0 / SR;
    assert!(
        largest <= own * 1.01,
        "step {largest} against the sine's {own}"
    );
}

#[test]
fn adsr_sustain_changed_while_held_glides_to_the_new_level_in_20_ms() {
    let gate = vec![1.0f32; 9600];
    let mut env = module(
        "adsr",
        &[("attack", 0.001), ("decay", 0.01), ("sustain", 0.8)],
    );
    let held = env.render(&[&gate], 4800).remove(0);
    assert_eq!(held[4799], 0.8, "holding sustain");
    env.set_param(2, 0.2);
    let after = env.render(&[&gate[4800..]], 4800).remove(0);
    let ramp = (0.02 * SR) as usize;
    assert!(
        after[..ramp - 1].windows(2).all(|w| w[1] < w[0]),
        "glides down"
    );
    assert!(after[0] > 0.79 && after[ramp / 2] > 0.45 && after[ramp / 2] < 0.55);
    assert!(after[ramp - 1..].iter().all(|&v| (v - 0.2).abs() < 1e-6));
}

#[test]
fn adsr_curved_segments_bend_like_an_analog_envelope_and_keep_their_times() {
    let mut gate = vec![1.0f32; 4800];
    gate.extend(vec![0.0; 9600]);
    let (attack, decay, release) = (0.01, 0.05, 0.1);
    let render = |curve: f32| {
        module(
            "adsr",
            &[
                ("attack", attack),
                ("decay", decay),
                ("sustain", 0.5),
                ("release", release),
                ("curve", curve),
            ],
        )
        .render(&[&gate], gate.len())
        .remove(0)
    };
    let at = |s: f32| (s * SR) as usize;
    for curve in [0.0, 0.3, 1.0] {
        let env = render(curve);
        // Each stage ends on its sample, within one, straight or curved.
        let peak = env.iter().position(|&v| v == 1.0).unwrap();
        assert!(
            peak.abs_diff(at(attack)) <= 1,
            "curve {curve}: attack ends at {peak}"
        );
        let held = peak + env[peak..].iter().position(|&v| v == 0.5).unwrap();
        assert!(
            (held - peak).abs_diff(at(decay)) <= 1,
            "curve {curve}: decay took {}",
            held - peak
        );
        let zero = 4800 + env[4800..].iter().position(|&v| v == 0.0).unwrap();
        assert!(
            (zero - 4800).abs_diff(at(release)) <= 1,
            "curve {curve}: release took {}",
            zero - 4800
        );
        let steps = env
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        assert!(steps < 0.05, "curve {curve}: no jumps ({steps})");
        // Halfway through the attack and the release: straight is halfway, curved
        // is further along (rises fast, then slows; falls fast, then slows).
        let mid_attack = env[at(attack) / 2];
        let mid_release = env[4800 + at(release) / 2];
        if curve == 0.0 {
            assert!((mid_attack - 0.5).abs() < 0.01 && (mid_release - 0.25).abs() < 0.01);
        } else {
            // The stronger the curve, the further along.
            let (up, down) = if curve == 1.0 {
                (0.9, 0.05)
            } else {
                (0.55, 0.22)
            };
            assert!(mid_attack > up, "curve {curve}: {mid_attack} halfway up");
            assert!(
                mid_release < down,
                "curve {curve}: {mid_release} halfway down"
            );
        }
    }
}

#[test]
fn a_restored_state_with_impossible_numbers_is_made_safe_before_it_plays() {
    use super::Kernel;
    let edges = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::MIN_POSITIVE / 2.0,
        f32::MAX,
        -f32::MAX,
    ];
    let input = noise_input(256);
    for spec in catalog::modules() {
        for &edge in &edges {
            let mut hostile = *Module::new(spec, SR).state();
            hostile.params.current = [edge; super::MAX_PARAMS];
            hostile.params.target = [edge; super::MAX_PARAMS];
            hostile.params.step = [edge; super::MAX_PARAMS];
            hostile.params.remaining = [3; super::MAX_PARAMS];
            hostile.params.in_octaves = [7; super::MAX_PARAMS];
            // Fewer moving than have samples left: `advance` would underflow.
            hostile.params.active = 1;
            hostile.sample_rate = edge;
            match &mut hostile.kernel {
                Kernel::Seq(k) => {
                    k.samples = u64::MAX;
                    k.origin = edge as f64;
                    k.rate = f64::NAN;
                }
                Kernel::Vco(k) => {
                    k.position = u32::MAX;
                    k.phase = f64::NAN;
                }
                Kernel::Delay(k) => k.write = u32::MAX,
                Kernel::Adsr(k) => {
                    k.stage = u32::MAX;
                    k.level = f64::INFINITY;
                }
                Kernel::Noise(k) => k.seeded_with = u32::MAX,
                _ => {}
            }
            let mut m = Module::new(spec, SR);
            m.restore(&hostile);
            for (i, p) in spec.params.iter().enumerate() {
                let v = m.param(i);
                assert!(
                    v.is_finite() && v >= p.min && v <= p.max,
                    "{}.{} = {v} after restoring {edge}",
                    spec.name,
                    p.name
                );
            }
            // Plays without a panic (debug builds check overflow and `% 0`).
            let inputs: Vec<&[f32]> = spec.input_ports().map(|_| &input[..]).collect();
            let _ = m.render(&inputs, 256);
        }
    }
}

/// The regression behind the 9th takeover of the LV2 crash test coming out a
/// period out of step: a standby that ran the period its primary died in took
/// the primary's (smaller) published frame count, so the next standby caught up
/// to a count a period short of what the plugin had run.
#[test]
fn a_lockstep_plugin_taking_over_keeps_the_count_of_frames_it_really_ran() {
    use super::{Kernel, Lv2Clock};
    modsynth_lv2::install();
    let spec = catalog::lookup("lv2:delay_n").unwrap();
    let mut standby = Module::create(spec, SR, 1024).unwrap();
    assert_eq!(standby.catch_up(5 * 1024, true), 5 * 1024);
    // The primary published 4 periods, then died inside the 5th.
    let mut published = *standby.state();
    published.kernel = Kernel::Lv2(Lv2Clock { frames: 4 * 1024 });
    standby.restore(&published);
    assert_eq!(standby.plugin_frames(), 5 * 1024);
}
