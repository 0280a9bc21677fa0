//! `modsynth-worker`: one process, one JACK client, one module (or, with
//! `--pool --seats N`, a standby host of N modules' standbys).

use clap::Parser;
use modsynth_model::{catalog, names, param};
use modsynth_worker::jack_host::Host;
use modsynth_worker::pooled;
use std::io::BufRead;
use std::process::ExitCode;
use std::sync::mpsc;

// The allocator that lets `assert_no_alloc` catch allocations on the real-time thread;
// only present where the check is on (debug builds).
#[cfg(all(feature = "rt-alloc-check", debug_assertions))]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

/// Run one modsynth module as a JACK client.
#[derive(Parser)]
#[command(name = "modsynth-worker", version)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["standalone", "pool"]))]
struct Args {
    /// Run TYPE as its own JACK client named ID until SIGINT or SIGTERM. Lines
    /// `PARAM=VALUE` on standard input change parameters while it plays.
    #[arg(long, requires = "module_type")]
    standalone: bool,
    /// Serve modsynthd as a warm pool worker (started by modsynthd, not by hand).
    #[arg(long, requires_all = ["client", "connect"], conflicts_with = "module_type")]
    pool: bool,
    /// Pool mode: the exact JACK client name to open.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// Pool mode: the supervisor's ipc-channel server name.
    #[arg(long, value_name = "SERVER")]
    connect: Option<String>,
    /// Pool mode: seconds a worker without a module waits for a supervisor after
    /// losing its own, before it exits (one with a module plays on regardless).
    #[arg(long, value_name = "SECONDS", default_value_t = pooled::DEFAULT_SPARE_GRACE.as_secs_f64())]
    spare_grace: f64,
    /// Pool mode: be a standby host of N seats (N >= 1): one JACK client that
    /// stands by for up to N modules at once, each addressed by the supervisor
    /// as a seat. Without it, an ordinary worker (one module at a time).
    #[arg(long, value_name = "N", requires = "pool", value_parser = clap::value_parser!(u16).range(1..))]
    seats: Option<u16>,
    /// Pool mode: the dir where the worker publishes its card so that a new
    /// supervisor can take it back (the instance's `<state dir>/workers`).
    #[arg(long, value_name = "DIR")]
    cards: Option<std::path::PathBuf>,
    /// Module type (see `modsynth modules`).
    #[arg(value_name = "TYPE")]
    module_type: Option<String>,
    /// Module id, used as the JACK client name.
    #[arg(value_name = "ID", requires = "module_type")]
    id: Option<String>,
    /// Initial parameter values.
    #[arg(value_name = "PARAM=VALUE")]
    params: Vec<String>,
}

enum Event {
    Param(usize, f32),
    Stop(&'static str),
}

fn main() -> ExitCode {
    modsynth_process::logging::init();
    // `lv2:<plugin>` types resolve through lilv.
    modsynth_lv2::install();
    // A panicking control or watcher thread must not leave a worker that plays on
    // but no longer obeys or watches: dead, its module fails over to its standby.
    modsynth_process::logging::abort_on_panic();
    let args = Args::parse();
    let result = if args.pool {
        let (client, server) = (args.client.as_deref(), args.connect.as_deref());
        // Anything but a finite, non-negative number of seconds means the default.
        let grace = std::time::Duration::try_from_secs_f64(args.spare_grace)
            .unwrap_or(pooled::DEFAULT_SPARE_GRACE);
        let cards = args.cards.as_deref();
        pooled::run(
            client.unwrap_or_default(),
            server.unwrap_or_default(),
            grace,
            cards,
            args.seats.unwrap_or(0),
        )
        .map_err(|e| (1, e))
    } else {
        run_standalone(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("modsynth-worker: {message}");
            ExitCode::from(code)
        }
    }
}

/// Exit code 2: the arguments are wrong; 1: JACK failed.
fn run_standalone(args: &Args) -> Result<(), (u8, String)> {
    let usage = |m: String| (2, m);
    let module_type = args.module_type.as_deref().unwrap_or_default();
    let id = args
        .id
        .as_deref()
        .ok_or_else(|| usage("--standalone needs TYPE and ID".into()))?;
    let spec = catalog::lookup(module_type).map_err(usage)?;
    names::check_module_id(id).map_err(usage)?;
    let params = args
        .params
        .iter()
        .map(|a| param::parse_assignment(spec, a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage(e.to_string()))?;

    let (events_tx, events) = mpsc::channel();
    let on_shutdown = {
        let tx = events_tx.clone();
        Box::new(move || {
            let _ = tx.send(Event::Stop("the JACK server shut down"));
        })
    };
    let mut host = Host::open(id, on_shutdown).map_err(|e| (1, e.to_string()))?;
    let ports = host
        .assign(
            0,
            spec,
            &params,
            None,
            modsynth_worker::jack_host::StatePlan::None,
            None,
        )
        .map_err(|e| (1, e))?;
    println!(
        "{id}: playing {} (ports {}); Ctrl-C stops",
        spec.name,
        ports.join(" ")
    );

    spawn_signal_watch(events_tx.clone()).map_err(|e| (1, e))?;
    spawn_stdin_reader(spec, events_tx);

    let reason = loop {
        match events.recv() {
            Ok(Event::Param(index, value)) => {
                if let Err(e) = host.controller(0).set_param(index, value, None) {
                    eprintln!("modsynth-worker: {e}");
                }
            }
            Ok(Event::Stop(reason)) => break reason,
            Err(_) => break "all event sources closed",
        }
    };
    tracing::info!(reason, "stopping");
    let shut_down = host
        .events()
        .shut_down
        .load(std::sync::atomic::Ordering::SeqCst);
    if shut_down {
        return Err((1, reason.to_string()));
    }
    host.close()
        .map_err(|e| (1, format!("closing the JACK client failed: {e}")))
}

fn spawn_signal_watch(tx: mpsc::Sender<Event>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(Event::Stop("signal"));
        }
    });
    Ok(())
}

/// Reads `PARAM=VALUE` lines; a bad line is reported and changes nothing. End of input
/// just ends the reader: a worker started with no input keeps playing.
fn spawn_stdin_reader(spec: &'static catalog::ModuleSpec, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match param::parse_assignment(spec, line) {
                Ok((index, value)) => {
                    if tx.send(Event::Param(index, value)).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("modsynth-worker: {e}"),
            }
        }
    });
}
