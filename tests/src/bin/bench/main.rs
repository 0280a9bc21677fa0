//! `modsynth-bench`: measures modsynth's performance targets on a private JACK server
//! and prints a markdown table (median, p99, and where relevant the ratio to a cold
//! JACK client open or to a peer measured in the same run, then notes), and writes
//! the rows as JSON. One file per group of rows, each documenting what its rows
//! measure:
//!
//! - here: `jack_cold_open_ms` (open + activate a fresh JACK client, exact name, no
//!   ports, then close it: the baseline the create rows are compared against) and
//!   `dsp_ns_per_period.<type>` (one `Module::process` call over a period, for every
//!   module type of the catalog, with low-level input signals; also given as a
//!   percentage of the period's time budget), `dsp_ns_per_period_gliding.<type>`
//!   (the same while a parameter glides, as a ratio to it), and the denormal rows
//!   `dsp_ns_per_period_silent_tail[_without_ftz].{vcf,delay}` (a resonant filter's
//!   and a feedback delay's periods 2-3 s after their input stopped, with and without
//!   flush-to-zero, as a ratio to their periods with signal).
//! - [`supervisor`]: pool start, idle worker memory.
//! - [`scale`]: create and control latency, CPU and xruns with 0, 8, 32 and 64
//!   modules playing.
//! - [`failover`]: SIGKILL of a playing module's primary, over and over: detection,
//!   gap, discontinuity, xruns, rebuild, and the same without a standby.
//! - [`midi`]: MIDI note-on frame to gate at the output.
//! - [`leaks`]: 1000 kill cycles, then what is left in `/dev/shm`.
//! - [`restart`]: SIGKILL of `modsynthd` under a playing set and a new one taking
//!   it back, over and over: re-adoption time, gap at the output.
//! - [`sets`]: set load of 8/32/64 modules, a replace of 32 by 32 others, bursts
//!   of 40 creates 3 ms apart.
//! - [`lv2`]: an LV2 plugin's create time and CPU against a built-in module's and
//!   against `jalv` with the same plugin.
//! - with `--peers`, [`peers`]: scsynth and plain JACK clients on the same server,
//!   with modsynth's matching rows given as a ratio to them.
//!
//! Helpers: [`load`] (CPU, memory and xruns of processes), [`settle`] (waiting for
//! the whole system via `/status`), [`events`] (a `/notify` subscriber).
//!
//! Run it through `scripts/bench` (release build, private `/dev/shm`).

mod control;
mod events;
mod failover;
mod leaks;
mod load;
mod lv2;
mod midi;
mod peers;
mod restart;
mod scale;
mod sets;
mod settle;
mod supervisor;

use clap::Parser;
use modsynth_model::catalog::{self, Signal, MAX_OUTPUTS};
use modsynth_model::histogram::Histogram;
use modsynth_tests::jack_server::JackServer;
use modsynth_worker::dsp::{Io, Module};
use serde::Serialize;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

/// Command line of `modsynth-bench`.
#[derive(Parser, Debug)]
#[command(
    name = "modsynth-bench",
    about = "Measure modsynth's performance targets"
)]
struct Args {
    /// Fewer iterations (a smoke run, about a second of measuring).
    #[arg(long)]
    quick: bool,
    /// Also measure the peers on the same server: SuperCollider's scsynth and plain
    /// JACK sine clients (`scripts/bench --peers` installs scsynth if missing).
    #[arg(long)]
    peers: bool,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Period (frames per JACK cycle) of the private server and of the DSP rows.
    #[arg(long, default_value_t = 256)]
    period: u32,
    /// Sample rate of the private server and of the DSP rows.
    #[arg(long, default_value_t = 48_000)]
    sample_rate: u32,
    /// Run only these groups of rows (repeatable): dsp, supervisor, control, scale,
    /// failover, midi, leaks, restart, sets, switch and bursts (only the set switch or burst rows of
    /// `sets`), lv2, peers (`peers` implies `--peers`). The cold open baseline always runs.
    #[arg(long, value_parser = ["dsp", "supervisor", "control", "scale", "failover", "midi", "leaks", "restart", "sets", "switch", "bursts", "lv2", "peers", "xrun_free"])]
    only: Vec<String>,
    /// Run the private server with realtime scheduling (`jackd -R`), as a user's
    /// server runs: JACK's process threads then take the CPU before every other
    /// thread. Needs the privilege (root, or an rtprio limit).
    #[arg(long)]
    realtime: bool,
    /// Levels of the scale rows (modules playing; comma-separated, like 0,32,64)
    /// [default: 0,8,32,64; 0,8 with --quick].
    #[arg(long, value_delimiter = ',')]
    levels: Vec<usize>,
    /// The failover rows' `modsynthd --standby-seats`: with N > 0 the module
    /// killed has its hot standby in a seat of a standby host, and each kill is
    /// also a hand-back to a worker of its own (0: a standby worker of its own).
    #[arg(long, default_value_t = 0)]
    standby_seats: u32,
    /// When the run started.
    #[arg(skip = Instant::now())]
    started: Instant,
}

impl Args {
    /// Whether the group of rows `group` runs; says so on stderr when it does.
    fn runs(&self, group: &str) -> bool {
        let chosen = self.only.iter().any(|g| g == group);
        let runs = if group == "peers" || group == "xrun_free" {
            self.peers || chosen
        } else {
            self.only.is_empty() || chosen
        };
        if runs {
            eprintln!(
                "bench: {group} ({:.0} s into the run)",
                self.started.elapsed().as_secs_f64()
            );
        }
        runs
    }
}

/// One measured quantity.
#[derive(Serialize, Debug, Clone)]
struct Row {
    name: String,
    unit: &'static str,
    /// How many samples the median and p99 are taken over (for a single figure
    /// summarising many events, how many events).
    n: usize,
    median: f64,
    p99: f64,
    /// `median / baseline median`, when the row is compared against one (left out
    /// when the baseline's median is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    /// The row `ratio` refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<String>,
    /// Median as a percentage of the period's time budget (DSP rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    budget_pct: Option<f64>,
    /// What else one must know to read the row (printed below the table).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl Row {
    /// The median and p99 of `samples` (nearest rank, see
    /// [`Histogram`]; NaN for none).
    fn new(name: impl Into<String>, unit: &'static str, samples: Vec<f64>) -> Row {
        let mut histogram = Histogram::new();
        for &s in &samples {
            histogram.record(s);
        }
        let at = |q| histogram.quantile(q).unwrap_or(f64::NAN);
        let mut row = Row::summary(name, unit, at(0.5), samples.len());
        row.p99 = at(0.99);
        row
    }

    /// One figure (a count, a share, a maximum) that sums up `n` events: median and
    /// p99 are both `value`.
    fn summary(name: impl Into<String>, unit: &'static str, value: f64, n: usize) -> Row {
        Row {
            name: name.into(),
            unit,
            n,
            median: value,
            p99: value,
            ratio: None,
            baseline: None,
            budget_pct: None,
            note: None,
        }
    }

    /// Gives the ratio of this row's median to `baseline`'s (none when that is 0).
    fn compared_with(mut self, baseline: &Row) -> Row {
        if baseline.median != 0.0 {
            self.ratio = Some(self.median / baseline.median);
            self.baseline = Some(baseline.name.clone());
        }
        self
    }

    /// Adds a note (an empty one is none).
    fn note(mut self, note: impl Into<String>) -> Row {
        let note = note.into();
        if !note.is_empty() {
            self.note = Some(note);
        }
        self
    }
}

/// The whole JSON document.
#[derive(Serialize)]
struct Report {
    quick: bool,
    sample_rate: u32,
    period: u32,
    jack_server: String,
    rows: Vec<Row>,
}

/// Opens + activates a fresh client `n` times, closing each; milliseconds.
fn bench_cold_open(server: &JackServer, n: usize) -> Result<Row, String> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let name = format!("bench-open-{i}");
        let t0 = Instant::now();
        let (client, lease) = server.open_client(&name)?.into_parts();
        let active = client
            .activate_async((), ())
            .map_err(|e| format!("activating {name}: {e}"))?;
        let dt = t0.elapsed();
        drop(active); // deactivate + close, not timed
        drop(lease);
        if i >= 2 {
            // The first two warm up libjack's shared memory mappings.
            samples.push(dt.as_secs_f64() * 1e3);
        }
    }
    Ok(Row::new("jack_cold_open_ms", "ms", samples))
}

/// The test input for an input port: gates get a 0/1 square at 4 Hz (so envelopes
/// and sequencers trigger), everything else a 0.05-amplitude sine at 110 Hz.
fn input_signal(signal: Signal, len: usize, sample_rate: f32) -> Vec<f32> {
    (0..len)
        .map(|n| {
            let t = n as f32 / sample_rate;
            match signal {
                Signal::Gate => {
                    if (t * 4.0).fract() < 0.5 {
                        1.0
                    } else {
                        0.0
                    }
                }
                _ => 0.05 * (2.0 * std::f32::consts::PI * 110.0 * t).sin(),
            }
        })
        .collect()
}

/// Times `Module::process` over one period for every catalog module type.
fn bench_dsp(period: usize, sample_rate: f32, iterations: usize) -> Vec<Row> {
    let budget_ns = period as f64 / sample_rate as f64 * 1e9;
    // One second of input, read a period at a time, wrapping around.
    let blocks = (sample_rate as usize / period).max(1);
    let len = blocks * period;
    let mut rows = Vec::new();
    for spec in catalog::modules() {
        let mut module = Module::new(spec, sample_rate);
        let inputs: Vec<Vec<f32>> = spec
            .input_ports()
            .map(|p| input_signal(p.signal, len, sample_rate))
            .collect();
        let samples = time_periods(&mut module, &inputs, period, iterations, |_, _| {});
        let mut row = Row::new(format!("dsp_ns_per_period.{}", spec.name), "ns", samples);
        row.budget_pct = Some(row.median / budget_ns * 100.0);
        let at_rest = row.clone();
        rows.push(row);
        if let Some(mut gliding) = bench_gliding(spec, period, sample_rate, iterations, &inputs) {
            gliding.budget_pct = Some(gliding.median / budget_ns * 100.0);
            rows.push(gliding.compared_with(&at_rest));
        }
        // The default wave is a sine; the edged waves are oversampled and filtered.
        if let Some(wave) = spec.param_index("wave") {
            for (i, name) in catalog::WAVEFORMS.iter().enumerate().skip(1) {
                let mut module = Module::new(spec, sample_rate);
                module.set_param(wave, i as f32);
                let samples = time_periods(&mut module, &inputs, period, iterations, |_, _| {});
                let mut row = Row::new(
                    format!("dsp_ns_per_period.{}_{name}", spec.name),
                    "ns",
                    samples,
                );
                row.budget_pct = Some(row.median / budget_ns * 100.0);
                rows.push(row.compared_with(&at_rest));
            }
        }
    }
    rows.extend(bench_denormal_tails(period, sample_rate, iterations));
    rows
}

/// Times `iterations` periods of `module` (after a tenth as many to warm up), fed a
/// period at a time from `inputs` (wrapping around), in ns; `before(module, i)`
/// runs inside the timed span right before period `i`.
fn time_periods(
    module: &mut Module,
    inputs: &[Vec<f32>],
    period: usize,
    iterations: usize,
    mut before: impl FnMut(&mut Module, usize),
) -> Vec<f64> {
    let blocks = inputs.first().map_or(1, |i| i.len() / period).max(1);
    let mut outputs = vec![vec![0.0f32; period]; MAX_OUTPUTS];
    let warmup = iterations / 10 + 10;
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let off = (i % blocks) * period;
        let mut io = Io::empty();
        for (slot, buf) in io.inputs.iter_mut().zip(inputs) {
            *slot = &buf[off..off + period];
        }
        for (slot, buf) in io.outputs.iter_mut().zip(outputs.iter_mut()) {
            *slot = &mut buf[..];
        }
        let t0 = Instant::now();
        before(module, i);
        module.process(black_box(&mut io), 0..period);
        let dt = t0.elapsed();
        black_box(&outputs);
        if i >= warmup {
            samples.push(dt.as_nanos() as f64);
        }
    }
    samples
}

/// Times a period of `spec` while a parameter glides through all of it: every
/// period its first smoothed parameter is set again, between its default and a
/// tenth of its range away, so the module runs the per-sample path a glide takes.
fn bench_gliding(
    spec: &'static catalog::ModuleSpec,
    period: usize,
    sample_rate: f32,
    iterations: usize,
    inputs: &[Vec<f32>],
) -> Option<Row> {
    let (index, p) = spec
        .params
        .iter()
        .enumerate()
        .find(|(_, p)| p.is_smoothed())?;
    let other = if p.default + 0.1 * (p.max - p.min) <= p.max {
        p.default + 0.1 * (p.max - p.min)
    } else {
        p.default - 0.1 * (p.max - p.min)
    };
    let mut module = Module::new(spec, sample_rate);
    let samples = time_periods(&mut module, inputs, period, iterations, |module, i| {
        module.set_param(index, if i % 2 == 0 { other } else { p.default });
    });
    let mut row = Row::new(
        format!("dsp_ns_per_period_gliding.{}", spec.name),
        "ns",
        samples,
    );
    row.note = Some(format!(
        "`{}` set again every period: glides through the whole period, the module \
         runs one sample at a time; at rest (no glide) a module pays one comparison \
         per period for smoothing",
        p.name
    ));
    Some(row)
}

/// Times periods of a resonant vcf and a feedback delay after their input stopped:
/// half a second of signal, then the last second of three seconds of silence, with
/// flush-to-zero as the engine sets it and without (the tail crawls through
/// subnormals). Compared with the same module's periods with signal.
fn bench_denormal_tails(period: usize, sample_rate: f32, iterations: usize) -> Vec<Row> {
    use modsynth_worker::denormals::FlushToZero;
    let signal_periods = (sample_rate as usize / 2) / period;
    let tail_periods = 3 * sample_rate as usize / period;
    let measured_from = tail_periods - sample_rate as usize / period;
    let repeats = (iterations / 2_000).max(1);
    let mut rows = Vec::new();
    for (name, params) in [
        ("vcf", [("cutoff", 1000.0), ("resonance", 0.95)]),
        ("delay", [("time", 0.001), ("feedback", 0.9)]),
    ] {
        let spec = catalog::module(name).expect("in the catalog");
        let noise = input_signal(Signal::Audio, signal_periods * period, sample_rate);
        let silence = vec![0.0f32; period];
        for ftz in [true, false] {
            let (mut with_signal, mut tail) = (Vec::new(), Vec::new());
            for _ in 0..repeats {
                let mut module = Module::new(spec, sample_rate);
                for (p, v) in params {
                    module.init_param(spec.param_index(p).expect("a param"), v);
                }
                let mut out = vec![0.0f32; period];
                for i in 0..signal_periods + tail_periods {
                    let input = if i < signal_periods {
                        &noise[i * period..(i + 1) * period]
                    } else {
                        &silence[..]
                    };
                    let mut io = Io::empty();
                    io.inputs[0] = input;
                    io.outputs[0] = &mut out[..];
                    let guard = ftz.then(FlushToZero::new);
                    let t0 = Instant::now();
                    module.process(black_box(&mut io), 0..period);
                    let dt = t0.elapsed().as_nanos() as f64;
                    drop(guard);
                    black_box(&out);
                    if i >= signal_periods / 2 && i < signal_periods {
                        with_signal.push(dt);
                    } else if i >= signal_periods + measured_from {
                        tail.push(dt);
                    }
                }
            }
            let mode = if ftz { "" } else { "_without_ftz" };
            let signal_row = Row::new(
                format!("dsp_ns_per_period_with_signal{mode}.{name}"),
                "ns",
                with_signal,
            );
            let mut tail_row = Row::new(
                format!("dsp_ns_per_period_silent_tail{mode}.{name}"),
                "ns",
                tail,
            )
            .compared_with(&signal_row);
            tail_row.note = Some(format!(
                "2 to 3 s after the input stopped ({}); target: within 1.5x of with signal",
                if ftz {
                    "flush-to-zero on, as the engine runs"
                } else {
                    "flush-to-zero off: the state turns subnormal"
                }
            ));
            rows.push(signal_row);
            rows.push(tail_row);
        }
    }
    rows
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn print_table(rows: &[Row], args: &Args) {
    println!(
        "Private JACK server: {} Hz, {}-frame periods ({:.2} ms), {}, {} run.",
        args.sample_rate,
        args.period,
        args.period as f64 / args.sample_rate as f64 * 1e3,
        if args.realtime {
            "realtime"
        } else {
            "not realtime"
        },
        if args.quick { "quick" } else { "full" }
    );
    println!();
    println!("| measure | unit | n | median | p99 | ratio | % of period |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = match (&r.ratio, &r.baseline) {
            (Some(x), Some(b)) => format!("{} x {b}", fmt_num(*x)),
            (None, Some(b)) => format!("- ({b}: 0)"),
            _ => String::new(),
        };
        let pct = r
            .budget_pct
            .map(|p| format!("{p:.3} %"))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {ratio} | {pct} |",
            r.name,
            r.unit,
            r.n,
            fmt_num(r.median),
            fmt_num(r.p99)
        );
    }
    let notes: Vec<&Row> = rows.iter().filter(|r| r.note.is_some()).collect();
    if !notes.is_empty() {
        println!();
        for r in notes {
            println!("- `{}`: {}", r.name, r.note.as_deref().unwrap_or_default());
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    // The harness's servers are real-time unless told otherwise: say which.
    std::env::set_var(
        modsynth_tests::jack_server::REALTIME_VAR,
        if args.realtime { "1" } else { "0" },
    );
    let server = JackServer::start_with(args.sample_rate, args.period)?;
    eprintln!(
        "bench: private JACK server '{}' ({} Hz, {} frames, {}), {} run",
        server.name(),
        args.sample_rate,
        args.period,
        if args.realtime {
            "realtime"
        } else {
            "not realtime"
        },
        if args.quick { "quick" } else { "full" }
    );
    let mut rows = Vec::new();
    let baseline = bench_cold_open(&server, if args.quick { 20 } else { 100 })?;
    rows.push(baseline.clone());
    let iterations = if args.quick { 2_000 } else { 20_000 };
    if args.runs("dsp") {
        rows.extend(bench_dsp(
            args.period as usize,
            args.sample_rate as f32,
            iterations,
        ));
    }
    if args.runs("supervisor") {
        rows.extend(supervisor::rows(&server, args.quick)?);
    }
    if args.runs("control") {
        rows.extend(control::rows(&server, args.quick)?);
    }
    if args.runs("scale") {
        let scale = scale::rows(&server, args.quick, &args.levels)?;
        let scale = scale.into_iter().map(|row| {
            if row.name.starts_with("create_ms") {
                row.compared_with(&baseline)
            } else {
                row
            }
        });
        rows.extend(scale);
    }
    if args.runs("failover") {
        rows.extend(failover::rows(&server, args.quick, args.standby_seats)?);
    }
    if args.runs("midi") {
        rows.extend(midi::rows(&server, args.quick)?);
    }
    if args.runs("leaks") {
        rows.extend(leaks::rows(&server, args.quick)?);
    }
    if args.runs("restart") {
        rows.extend(restart::rows(&server, args.quick)?);
    }
    if args.runs("sets") {
        rows.extend(sets::rows(&server, args.quick)?);
    } else {
        if args.runs("switch") {
            rows.extend(sets::switch_rows(&server, args.quick)?);
        }
        if args.runs("bursts") {
            rows.extend(sets::burst_rows(&server, args.quick)?);
        }
    }
    if args.runs("lv2") {
        rows.extend(lv2::rows(&server, args.quick)?);
    }
    if args.runs("peers") {
        rows.extend(peers::rows(&server, args.quick)?);
        peers::compare(&mut rows, args.sample_rate);
    }
    if !args.quick && args.runs("xrun_free") {
        rows.extend(peers::xrun_free_rows(&server)?);
    }
    drop(server);

    print_table(&rows, args);
    let report = Report {
        quick: args.quick,
        sample_rate: args.sample_rate,
        period: args.period,
        jack_server: if args.realtime {
            "jackd (dummy backend, private, realtime)".into()
        } else {
            "jackd (dummy backend, private)".into()
        },
        rows,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&args.json, json + "\n")
        .map_err(|e| format!("writing {}: {e}", args.json.display()))?;
    eprintln!(
        "bench: wrote {} ({:.0} s)",
        args.json.display(),
        args.started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("modsynth-bench: {e}");
        std::process::exit(1);
    }
}
