//! Hand-over is bit-exact, proven without JACK: engine A plays a module whose state
//! lives in a shared-memory segment for `k` periods, publishing after each; engine B
//! (another owner id, as a standby in another process would be) maps the segment,
//! takes the module over with the owner compare-and-swap and continues. From its
//! first period on, B's output must be bit-identical to an engine that never
//! stopped, for every module type and every `k` in a range, with parameter changes
//! landing before, at and after the hand-over and glides in flight across it, and
//! with the supervisor's replay of every value to the new owner (which must not
//! disturb a glide).

use modsynth_model::catalog::{self, ModuleSpec, Signal};
use modsynth_worker::dsp::Module;
use modsynth_worker::engine::{self, Buffers, Controller, Engine};
use modsynth_worker::shared_state::SharedState;

const SR: f32 = 48_000.0;
/// Short periods, so one 5 ms glide (240 samples) spans several of them.
const N: usize = 64;
const PERIODS: usize = 24;
const PRIMARY: u64 = 1;
const STANDBY: u64 = 2;

/// Unlinks a test segment however the test ends.
struct Segment(String);

impl Segment {
    fn new(label: &str) -> Segment {
        let name = format!("/mstest{}-{label}-state", std::process::id());
        let _ = SharedState::unlink(&name);
        Segment(name)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = SharedState::unlink(&self.0);
    }
}

fn input(signal: Signal, port: usize, i: usize) -> f32 {
    let t = i as f32 / SR;
    match signal {
        Signal::Audio => {
            let x = (i as u32 ^ port as u32).wrapping_mul(2_654_435_761);
            0.4 * (std::f32::consts::TAU * 220.0 * t).sin()
                + 0.1 * ((x >> 8) as f32 / 16_777_216.0 - 0.5)
        }
        Signal::Cv => 0.3 * (std::f32::consts::TAU * 7.0 * t).sin(),
        Signal::Gate => (i / 300).is_multiple_of(2) as u8 as f32,
        Signal::Midi => unreachable!("a MIDI port is not among the audio inputs"),
    }
}

fn fill(spec: &ModuleSpec, ports: &mut Buffers, period: usize) {
    for ((k, p), buf) in spec.input_ports().enumerate().zip(ports.inputs.iter_mut()) {
        for (j, s) in buf.iter_mut().enumerate() {
            *s = input(p.signal, k, period * N + j);
        }
    }
}

/// Parameter changes (frame, index, value) spread over the whole run: every
/// parameter changes twice, at frames that fall inside periods, on period
/// boundaries and just before them, so that with any `k` some glide is in flight
/// when B takes over.
fn script(spec: &ModuleSpec) -> Vec<(u32, usize, f32)> {
    let mut changes = Vec::new();
    for (index, p) in spec.params.iter().enumerate() {
        for round in 0..2 {
            let at = (17 + index * 61 + round * 701) % (PERIODS * N - 8);
            let value = if p.is_enum() {
                ((p.default as usize + 1 + round) % p.values.len()) as f32
            } else if round == 0 {
                p.min + 0.7 * (p.max - p.min)
            } else {
                p.min + 0.2 * (p.max - p.min)
            };
            changes.push((at as u32, index, value));
        }
    }
    // Times are read as whole numbers by some modules: keep them meaningful.
    if spec.name == "delay" {
        changes.retain(|&(_, i, _)| i != 0);
        changes.push((100, 0, 0.002));
        changes.push((700, 0, 0.0005));
    }
    changes
}

fn engine_with(
    spec: &'static ModuleSpec,
    shared: Option<SharedState>,
    owner: u64,
    first_period: usize,
) -> (Controller<Buffers>, Engine<Buffers>) {
    let (mut c, mut e) = engine::new::<Buffers>(1024);
    e.set_owner_id(owner);
    let mut ports = Buffers::new(spec, N);
    fill(spec, &mut ports, first_period);
    c.install_shared(Module::new(spec, SR), ports, shared)
        .unwrap();
    (c, e)
}

/// Plays periods `from..to`, returning each period's outputs, concatenated.
fn play(spec: &ModuleSpec, e: &mut Engine<Buffers>, from: usize, to: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for period in from..to {
        // Before its first period the engine has not taken its ports yet: they were
        // filled for `from` when they were made.
        if let Some(ports) = e.ports_mut() {
            fill(spec, ports, period);
        }
        e.process((period * N) as u32, N, &());
        let ports = e.ports().unwrap();
        out.push(
            ports
                .outputs
                .iter()
                .flatten()
                .map(|v| v.to_bits())
                .collect(),
        );
    }
    out
}

#[test]
fn a_standby_continues_every_module_bit_exactly_after_any_number_of_periods() {
    for spec in catalog::modules() {
        let changes = script(spec);
        // The engine that never stops.
        let (mut c, mut e) = engine_with(spec, None, PRIMARY, 0);
        for &(at, index, value) in &changes {
            c.set_param(index, value, Some(at)).unwrap();
        }
        let reference = play(spec, &mut e, 0, PERIODS);

        for k in 0..PERIODS {
            let segment = Segment::new(&format!("{}{k}", spec.name));
            let module = Module::new(spec, SR);
            let shared =
                SharedState::create(&segment.0, module.state(), module.buffer(), PRIMARY).unwrap();
            let (mut a, mut primary) = engine_with(spec, Some(shared), PRIMARY, 0);
            let handover = (k * N) as u32;
            for &(at, index, value) in changes.iter().filter(|c| c.0 < handover) {
                a.set_param(index, value, Some(at)).unwrap();
            }
            let before = play(spec, &mut primary, 0, k);

            // The standby maps the segment; the primary "dies" (is never run again).
            let type_index = catalog::module_index(spec.name).unwrap() as u32;
            let watcher = SharedState::open(&segment.0, type_index).unwrap();
            assert!(watcher.take_over(PRIMARY, STANDBY), "{} k={k}", spec.name);
            let (_, slot) = watcher.published();
            let published = watcher.load(slot, type_index).unwrap();
            let shared = SharedState::open(&segment.0, type_index).unwrap();
            let (mut b, mut standby) = engine_with(spec, Some(shared), STANDBY, k);
            // What the supervisor does: every value again, then what comes next.
            for index in 0..spec.params.len() {
                b.set_param(index, published.params.target[index], None)
                    .unwrap();
            }
            for &(at, index, value) in changes.iter().filter(|c| c.0 >= handover) {
                b.set_param(index, value, Some(at)).unwrap();
            }
            let after = play(spec, &mut standby, k, PERIODS);

            for (p, got) in before.iter().chain(&after).enumerate() {
                assert!(
                    *got == reference[p],
                    "{}: handed over after {k} periods, period {p} differs from the \
                     uninterrupted engine",
                    spec.name
                );
            }
        }
    }
}

/// `publish_after` is the fence at publish: an engine whose last publication was
/// replaced by someone else's (a new owner that published while this one was stalled
/// between its owner check and its publish) does not overwrite it, and continues
/// from what the other published.
#[test]
fn a_primary_whose_publication_was_overtaken_continues_from_the_new_one() {
    let spec = catalog::module("const").unwrap();
    let segment = Segment::new("fence");
    let mut module = Module::new(spec, SR);
    module.init_param(0, 0.25);
    let shared = SharedState::create(&segment.0, module.state(), module.buffer(), PRIMARY).unwrap();
    let (mut c, mut e) = engine::new::<Buffers>(8);
    e.set_owner_id(PRIMARY);
    c.install_shared(module, Buffers::new(spec, N), Some(shared))
        .unwrap();
    e.process(0, N, &());
    assert!(e.ports().unwrap().outputs[0].iter().all(|&v| v == 0.25));

    // Another writer publishes a later state behind the primary's back.
    let other = SharedState::open(&segment.0, 9).unwrap();
    let mut theirs = Module::new(spec, SR);
    theirs.init_param(0, 0.75);
    let seen = other.published();
    assert!(other
        .publish_after(seen, theirs.state(), 2 * N as u32)
        .is_some());

    e.process(N as u32, N, &()); // its publish is refused
    assert_eq!(
        other.published(),
        (2 * N as u32, 1 - seen.1),
        "not overwritten"
    );
    e.process(2 * N as u32, N, &());
    assert!(
        e.ports().unwrap().outputs[0].iter().all(|&v| v == 0.75),
        "continues from the state it did not write"
    );
}
