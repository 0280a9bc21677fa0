//! No subnormal arithmetic in a decaying tail: after the input of a resonant vcf and
//! of a feedback delay stops, their state decays towards zero. Without flush-to-zero
//! it passes through subnormal floats, which cost x86 a microcode assist per
//! operation (the bench measures the time: `modsynth-bench --only dsp`); with it, the
//! engine's state and outputs never hold a subnormal. Counting them, rather than
//! timing periods, makes this a test that fails for the right reason only.

use modsynth_model::catalog;
use modsynth_worker::denormals::FlushToZero;
use modsynth_worker::dsp::{Kernel, Module};
use modsynth_worker::engine::{self, Buffers};

const SR: f32 = 48_000.0;
const N: usize = 256;
/// Half a second of signal, then three seconds of silence.
const SIGNAL_PERIODS: usize = 94;
const TAIL_PERIODS: usize = 563;

fn patch(name: &str) -> Module {
    let spec = catalog::module(name).unwrap();
    let mut m = Module::new(spec, SR);
    let params: &[(&str, f32)] = match name {
        // Q 10 at 1 kHz: rings for a while, then decays by e every 3 ms.
        "vcf" => &[("cutoff", 1000.0), ("resonance", 0.95)],
        // Repeats every millisecond at 0.9 of the level before.
        _ => &[("time", 0.001), ("feedback", 0.9), ("mix", 0.5)],
    };
    for (p, v) in params {
        m.init_param(spec.param_index(p).unwrap(), *v);
    }
    m
}

fn input(i: usize) -> f32 {
    if i < SIGNAL_PERIODS * N {
        // A deterministic, noisy signal (a cheap LCG), amplitude 0.5.
        let x = (i as u32)
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        (x >> 8) as f32 / 16_777_216.0 - 0.5
    } else {
        0.0
    }
}

/// Subnormal values in the module's state, its delay line and `out`.
fn subnormals(m: &Module, out: &[f32]) -> usize {
    let state = match m.state().kernel {
        Kernel::Vcf(v) => vec![v.ic1eq, v.ic2eq],
        _ => vec![],
    };
    state
        .iter()
        .chain(m.buffer())
        .chain(out)
        .filter(|v| v.is_subnormal())
        .count()
}

/// Plays the patch through the engine (flush-to-zero on, as on the JACK thread) and
/// counts subnormals at the end of every period of the tail.
fn through_the_engine(name: &str) -> usize {
    let spec = catalog::module(name).unwrap();
    let (mut c, mut e) = engine::new::<Buffers>(8);
    c.install(patch(name), Buffers::new(spec, N)).unwrap();
    let mut found = 0;
    for p in 0..SIGNAL_PERIODS + TAIL_PERIODS {
        e.process((p * N) as u32, N, &());
        if p >= SIGNAL_PERIODS {
            found += subnormals(e.module().unwrap(), &e.ports().unwrap().outputs[0]);
        }
        if let Some(ports) = e.ports_mut() {
            for (j, s) in ports.inputs[0].iter_mut().enumerate() {
                *s = input((p + 1) * N + j);
            }
        }
    }
    found
}

/// The same without the engine, on this thread's default floating-point mode: the
/// control that shows the tail does reach subnormals.
fn without_flush_to_zero(name: &str) -> usize {
    let mut m = patch(name);
    let mut found = 0;
    for p in 0..SIGNAL_PERIODS + TAIL_PERIODS {
        let x: Vec<f32> = (0..N).map(|j| input(p * N + j)).collect();
        let out = m.render(&[&x], N).remove(0);
        if p >= SIGNAL_PERIODS {
            found += subnormals(&m, &out);
        }
    }
    found
}

#[test]
fn the_tails_of_a_resonant_vcf_and_a_feedback_delay_never_turn_subnormal() {
    if !FlushToZero::SUPPORTED {
        eprintln!("no flush-to-zero on this architecture: nothing to check");
        return;
    }
    for name in ["vcf", "delay"] {
        let control = without_flush_to_zero(name);
        let engine = through_the_engine(name);
        eprintln!("{name}: subnormals in the tail: {control} without flush-to-zero, {engine} in the engine");
        assert!(
            control > 0,
            "{name}: the tail never reached subnormals: not a test"
        );
        assert_eq!(engine, 0, "{name}: the engine computed with subnormals");
    }
}
