//! `modsynthd`: the modsynth supervisor.

use clap::Parser;
use modsynth_shm::Warning;
use modsynth_supervisor::core::{Config, Core, Event, RegistryView};
use modsynth_supervisor::jack_client::Jack;
use modsynth_supervisor::osc_server::{self, Clock};
use modsynth_supervisor::runtime::Runtime;
use modsynth_supervisor::sentinel::Sentinel;
use modsynth_supervisor::spawn::Spawner;
use modsynth_supervisor::state::{StateDir, Writer};
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keep a pool of warm modsynth workers and serve OSC.
///
/// The JACK server is the one JACK_DEFAULT_SERVER names (or the default one).
#[derive(Parser)]
#[command(name = "modsynthd", version)]
struct Args {
    /// Instance name: the supervisor's JACK client, and the prefix of workers' names.
    #[arg(long, default_value = "modsynth")]
    name: String,
    /// Warm workers kept ready.
    #[arg(long, default_value_t = 8)]
    pool: usize,
    /// UDP port for OSC (0: any free port; the line printed at start names it).
    #[arg(long, default_value_t = 57300)]
    osc_port: u16,
    /// Address to bind the OSC port to (0.0.0.0 lets other machines control it).
    #[arg(long, default_value = "127.0.0.1")]
    osc_bind: IpAddr,
    /// Where state lives: the instance lock, registry.json, metrics.json
    /// [default: $XDG_RUNTIME_DIR/modsynth/NAME, else /tmp/modsynth-UID/NAME].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The worker binary [default: modsynth-worker next to modsynthd].
    #[arg(long)]
    worker: Option<PathBuf>,
    /// Crash-loop limit N/SECONDS: a module whose workers die more than N times in
    /// SECONDS (or right after taking it over) restarts fresh once, then is
    /// quarantined.
    #[arg(long, default_value = "5/10")]
    crash_loop: modsynth_supervisor::restart::RestartPolicy,
    /// Seconds a spare worker waits for a new modsynthd after this one died, before
    /// it exits. Workers playing a module never stop because modsynthd died.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    spare_grace: f64,
}

/// The workers taken back at start, and what the last supervisor left for this one.
struct Adopted {
    found: Vec<modsynth_supervisor::adoption::Found>,
    /// See [`modsynth_supervisor::adoption::Finding::highest_id`].
    highest_id: Option<modsynth_supervisor::core::WorkerId>,
    saved: modsynth_supervisor::core::Saved,
    counters: Option<modsynth_control::status::Counters>,
    /// How long finding and asking them took.
    took: Duration,
}

/// A number of seconds, 0 to one day.
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds from 0 to 86400")),
    }
}

/// How often `metrics.json` is rewritten at most (only when something changed).
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Prints a status line; a closed stdout (a pipe whose reader left) must not take
/// the supervisor, and with it every module, down.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    modsynth_control::logging::init();
    // A thread of ours that panics takes the process down, to be restarted by its
    // watchdog and re-adopt the workers, rather than leave it deaf or blind.
    modsynth_control::logging::abort_on_panic();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modsynthd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    modsynth_control::names::check_module_id(&args.name)
        .map_err(|e| format!("--name: {}", e.replace("module id", "instance name")))?;
    if args.pool == 0 || args.pool > 256 {
        return Err(format!("--pool must be 1..256, got {}", args.pool));
    }
    let server = std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".into());
    if server == args.name {
        // jackd2 (1.9.21) gives a client named like its server the server's own
        // socket: from then on no client can connect, ours or anyone's.
        return Err(format!(
            "--name {0}: the JACK server is also called '{0}', and a JACK client of \
             that name makes jackd2 refuse every further client. Pick another --name.",
            args.name
        ));
    }
    let worker = match &args.worker {
        Some(w) => w.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("modsynth-worker"),
    };
    if !worker.exists() {
        return Err(format!(
            "no worker binary at {} (build it: cargo build --workspace, or pass --worker)",
            worker.display()
        ));
    }
    let dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => modsynth_shm::default_base_dir().join(&args.name),
    };
    // Ours alone from here on: a second modsynthd of this instance stops here.
    let state = StateDir::lock(&args.name, &dir, args.state_dir.is_some())?;
    // Workers a dead supervisor of this instance left playing are taken back before
    // anything else: their state segments must survive the leftover clean-up.
    state.remove_stale_temp_files();
    let cards = match state.cards_dir() {
        Ok(cards) => cards,
        Err(e) => {
            state.close(None);
            return Err(e);
        }
    };
    let adopt_started = Instant::now();
    let finding = modsynth_supervisor::adoption::find(&cards, &args.name);
    let keep: std::collections::HashSet<String> = finding
        .found
        .iter()
        .filter_map(|f| f.worker.playing.as_ref().map(|p| p.state.clone()))
        .collect();
    // A module without a standby whose worker died while no supervisor ran has no
    // one left to play it: say so rather than lose it silently.
    let lost: Vec<String> = state
        .registered_modules()
        .into_iter()
        .filter(|(_, segment)| !keep.contains(segment))
        .map(|(id, _)| id)
        .collect();
    if !lost.is_empty() {
        say!(
            "modsynthd: {} module(s) lost every worker while no modsynthd ran and are gone \
             (create them again): {}",
            lost.len(),
            lost.join(", ")
        );
    }
    let taken_back = Adopted {
        found: finding.found,
        highest_id: finding.highest_id,
        saved: state.read_saved(),
        counters: state.read_counters(),
        took: adopt_started.elapsed(),
    };
    let opened = match state.open_registry(&keep) {
        Ok(opened) => opened,
        Err(e) => {
            state.close(None);
            return Err(e);
        }
    };
    match &opened.warning {
        // The first start of an instance, or the last one stopped cleanly.
        Some(w @ Warning::Missing { .. }) => tracing::debug!("{w}"),
        Some(w @ Warning::Corrupt { .. }) => tracing::warn!("{w}"),
        None => {}
    }
    if !opened.removed.is_empty() {
        say!(
            "modsynthd: removed {} segment(s) left by an earlier run of '{}'",
            opened.removed.len(),
            args.name
        );
    }
    let writer = match Writer::spawn(opened.registry, &state) {
        Ok(writer) => writer,
        Err(e) => {
            state.close(None);
            return Err(e);
        }
    };
    let served = serve(&args, worker, &state, &writer, started, taken_back);
    let kept = state.close(writer.stop());
    if let Some(note) = kept {
        say!("modsynthd: {note}");
    }
    served?;
    say!("modsynthd: stopped");
    Ok(())
}

/// Opens JACK and the OSC port, fills the pool and runs the core until SIGINT or
/// SIGTERM has stopped every worker. Keeps the registry and `metrics.json` current
/// through `writer`.
fn serve(
    args: &Args,
    worker: PathBuf,
    state: &StateDir,
    writer: &Writer,
    started: Instant,
    adopted: Adopted,
) -> Result<(), String> {
    let state_dir = state.path();
    let (events_tx, events) = mpsc::channel();
    let jack = Arc::new(Jack::open(&args.name, events_tx.clone())?);

    let socket = UdpSocket::bind((args.osc_bind, args.osc_port)).map_err(|e| {
        format!(
            "cannot listen for OSC on {}:{} ({e}); pick another --osc-port",
            args.osc_bind, args.osc_port
        )
    })?;
    let reply_socket = socket.try_clone().map_err(|e| e.to_string())?;
    let osc_addr = socket.local_addr().map_err(|e| e.to_string())?;
    osc_server::spawn(socket, jack.clone() as Arc<dyn Clock>, events_tx.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }

    let spawner = Spawner {
        binary: worker,
        instance: args.name.clone(),
        sentinel: Sentinel::start(events_tx.clone())?,
        spare_grace: Duration::from_secs_f64(args.spare_grace),
        cards: state.cards_dir()?,
    };
    let mut runtime = Runtime {
        socket: reply_socket,
        jack,
        spawner,
        events: events_tx,
        states: Default::default(),
    };
    let mut core = Core::new(Config {
        pool: args.pool,
        instance: args.name.clone(),
        restart: args.crash_loop,
    });
    say!(
        "modsynthd: instance '{}', OSC on {osc_addr}, pool of {}, state in {}",
        args.name,
        args.pool,
        state_dir.display()
    );
    if !adopted.found.is_empty() {
        let mut workers = Vec::new();
        for f in adopted.found {
            runtime.spawner.follow(
                f.worker.id,
                f.worker.pid,
                f.receiver,
                runtime.events.clone(),
            );
            workers.push(f.worker);
        }
        let n = workers.len();
        core.adopt(workers, adopted.saved, adopted.counters, &mut runtime);
        say!(
            "modsynthd: took back {n} worker(s) playing {} module(s) in {} ms",
            core.module_count(),
            adopted.took.as_millis()
        );
    }
    if let Some(id) = adopted.highest_id {
        core.number_workers_above(id);
    }
    core.start(&mut runtime);

    let mut pool_reported = false;
    let mut shutdown_started: Option<Instant> = None;
    let mut killed = false;
    // What the writer was last given, and when metrics.json is due next.
    let mut written_view = RegistryView::default();
    let mut written_metrics = String::new();
    let mut written_saved = String::new();
    let mut next_metrics = Instant::now();
    loop {
        let wait = core
            .next_deadline()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(50));
        match events.recv_timeout(wait) {
            Ok(event) => core.handle(event, &mut runtime),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        core.tick(&mut runtime);
        let leaks = writer.shm_leaks();
        if leaks != core.shm_leaks() {
            core.handle(Event::ShmLeaks(leaks), &mut runtime);
        }
        let view = core.registry_view();
        if view != written_view {
            writer.view(view.clone());
            written_view = view;
        }
        let saved = serde_json::to_string(&core.saved()).unwrap_or_default();
        if saved != written_saved {
            writer.saved(saved.clone());
            written_saved = saved;
        }
        if Instant::now() >= next_metrics {
            next_metrics = Instant::now() + METRICS_INTERVAL;
            let report = core.status_report();
            let json = serde_json::to_string_pretty(&report).unwrap_or_default();
            if json != written_metrics {
                writer.metrics(format!("{json}\n"));
                written_metrics = json;
            }
        }
        if !pool_reported && core.spares_ready() >= args.pool {
            pool_reported = true;
            say!(
                "modsynthd: pool ready ({} workers) in {} ms",
                args.pool,
                started.elapsed().as_millis()
            );
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) && shutdown_started.is_none() {
            say!("modsynthd: stopping {} worker(s)", core.worker_count());
            shutdown_started = Some(Instant::now());
            core.handle(Event::Shutdown, &mut runtime);
        }
        if let Some(t) = shutdown_started {
            if core.is_stopped() {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) && !killed {
                tracing::warn!(
                    "{} worker(s) did not stop in 10 s: killing them",
                    core.worker_count()
                );
                core.kill_all(&mut runtime);
                killed = true;
            }
            if t.elapsed() > Duration::from_secs(12) {
                break;
            }
        }
    }
    Ok(())
}
