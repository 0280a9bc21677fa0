//! `modsynthd`: the modsynth supervisor.

use clap::Parser;
use modsynth_shm::Warning;
use modsynth_supervisor::core::{Config, Core, Event, Limits, RegistryView};
use modsynth_supervisor::event_loop::{Inbox, Poller, Ready};
use modsynth_supervisor::jack_client::Jack;
use modsynth_supervisor::osc_server::{Access, Clock, OscSocket, Traffic};
use modsynth_supervisor::osc_tcp::{self, Connections};
use modsynth_supervisor::patchbay::Patchbay;
use modsynth_supervisor::placement::Placement;
use modsynth_supervisor::runtime::Runtime;
use modsynth_supervisor::sets_dir::SetsDir;
use modsynth_supervisor::spawn::{new_channels, Spawner};
use modsynth_supervisor::state::{StateDir, Writer};
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
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
    /// Address to bind the OSC port to. Anything but loopback needs --allow.
    #[arg(long, default_value = "127.0.0.1")]
    osc_bind: IpAddr,
    /// Senders that may send commands besides loopback: CIDRs or addresses,
    /// comma-separated (192.168.1.0/24,10.0.0.7). Others get no answer at all.
    #[arg(long, default_value = "")]
    allow: String,
    /// Modules at most (created or waiting for a spare); more are refused.
    #[arg(long, default_value_t = modsynth_protocol::capacity::DEFAULT_MAX_MODULES)]
    max_modules: usize,
    /// Where set files live: OSC /set/load and /set/save take names in it
    /// [default: $XDG_DATA_HOME/modsynth/sets, else ~/.local/share/modsynth/sets].
    #[arg(long, env = "MODSYNTH_SETS_DIR")]
    sets_dir: Option<PathBuf>,
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
    /// Seats per standby host, 0 to 64 (0: off). With N >= 1 the hot standbys of built-in
    /// modules sit in seats of standby hosts, one worker process and one JACK
    /// client standing by for up to N modules, instead of a worker (and JACK
    /// client) each; a module that fails over into a seat is handed back to a
    /// worker of its own without a gap once that one is ready. LV2 modules keep
    /// standby workers of their own. The pool keeps a free seat ready. Needs a
    /// modsynth-worker that serves --seats; with one that does not, standbys are
    /// workers of their own.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    standby_seats: u16,
}

/// The workers taken back at start, and what the last supervisor left for this one.
struct Adopted {
    found: Vec<modsynth_supervisor::adoption::Found>,
    /// See [`modsynth_supervisor::adoption::Finding::highest_id`].
    highest_id: Option<modsynth_supervisor::core::WorkerId>,
    saved: modsynth_supervisor::core::Saved,
    counters: Option<modsynth_protocol::status::Counters>,
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
    modsynth_process::logging::init();
    // A thread of ours that panics takes the process down, to be restarted by its
    // watchdog and re-adopt the workers, rather than leave it deaf or blind.
    modsynth_process::logging::abort_on_panic();
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
    modsynth_model::names::check_module_id(&args.name)
        .map_err(|e| format!("--name: {}", e.replace("module id", "instance name")))?;
    if args.pool == 0 || args.pool > 256 {
        return Err(format!("--pool must be 1..256, got {}", args.pool));
    }
    if args.max_modules == 0 || args.max_modules > 256 {
        return Err(format!(
            "--max-modules must be 1..256, got {}",
            args.max_modules
        ));
    }
    let access = Access::parse(&args.allow)?;
    let sets_dir = args
        .sets_dir
        .clone()
        .or_else(modsynth_protocol::setfile::default_sets_dir)
        .ok_or("no HOME or XDG_DATA_HOME for the sets dir; give --sets-dir")?;
    let sets = SetsDir::open(&sets_dir)?;
    if !args.osc_bind.is_loopback() && access.is_loopback_only() {
        return Err(format!(
            "--osc-bind {}: commands from other machines need --allow with the \
             networks that may send them (like --allow 192.168.1.0/24)",
            args.osc_bind
        ));
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
    modsynth_model::names::check_instance_name(&args.name).map_err(|e| format!("--name: {e}"))?;
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
    let served = serve(
        &args, access, sets, worker, &state, &writer, started, taken_back,
    );
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
// One call from `run`, with everything `run` prepared: a struct for it would be
// built at the one call site and taken apart at the top of this one.
#[allow(clippy::too_many_arguments)]
fn serve(
    args: &Args,
    access: Access,
    sets: SetsDir,
    worker: PathBuf,
    state: &StateDir,
    writer: &Writer,
    started: Instant,
    adopted: Adopted,
) -> Result<(), String> {
    let state_dir = state.path();
    let inbox = Inbox::new()?;
    let events_tx = inbox.sender();
    let jack = Arc::new(Jack::open(&args.name, events_tx.clone())?);
    modsynth_supervisor::metadata_deadlocks::start()?;
    // `lv2:<plugin>` module types resolve through lilv, with plugin ranges given
    // as fractions of the sample rate scaled by the server's.
    modsynth_lv2::spec::set_sample_rate(jack.client().sample_rate());
    modsynth_lv2::install();

    let socket = UdpSocket::bind((args.osc_bind, args.osc_port)).map_err(|e| {
        format!(
            "cannot listen for OSC on {}:{} ({e}); pick another --osc-port",
            args.osc_bind, args.osc_port
        )
    })?;
    let reply_socket = socket.try_clone().map_err(|e| e.to_string())?;
    let osc_addr = socket.local_addr().map_err(|e| e.to_string())?;
    let sets_path = sets.path().to_path_buf();
    let traffic = Traffic::new();
    let tcp = Connections::default();
    // TCP on the same port: the CLI and SuperCollider-style clients use it when it
    // is there. A port taken for TCP by someone else leaves UDP alone.
    let tcp_note = match TcpListener::bind(osc_addr) {
        Ok(listener) => {
            osc_tcp::spawn(
                listener,
                jack.clone() as Arc<dyn Clock>,
                events_tx.clone(),
                traffic.clone(),
                access.clone(),
                tcp.clone(),
            )?;
            "UDP and TCP"
        }
        Err(e) => {
            tracing::warn!("OSC over TCP is off: cannot listen on {osc_addr}: {e}");
            "UDP only"
        }
    };
    let mut osc = OscSocket::new(
        socket,
        jack.clone() as Arc<dyn Clock>,
        traffic.clone(),
        access,
    )?;
    let mut poller = Poller::new(&inbox, Some(std::os::fd::AsFd::as_fd(osc.socket())))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // SIGHUP too: a closed terminal (or a session ending) stops it cleanly
    // instead of killing it with its segments and workers left behind.
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }

    let (channels, mut channels_arriving) = new_channels();
    let spawner = Spawner {
        binary: worker,
        instance: args.name.clone(),
        channels,
        spare_grace: Duration::from_secs_f64(args.spare_grace),
        cards: state.cards_dir()?,
    };
    let midi = jack.take_midi();
    let patchbay = Patchbay::start(jack.clone(), events_tx.clone())?;
    let mut runtime = Runtime {
        patchbay,
        socket: reply_socket,
        midi,
        midi_dropped: 0,
        jack,
        spawner,
        events: events_tx,
        states: Default::default(),
        traffic: traffic.clone(),
        sets,
        tcp,
    };
    let mut core = Core::new(Config {
        pool: args.pool,
        instance: args.name.clone(),
        restart: args.crash_loop,
        limits: Limits {
            max_modules: args.max_modules,
            ..Limits::default()
        },
        placement: Placement {
            seats_per_host: args.standby_seats,
        },
    });
    say!(
        "modsynthd: instance '{}', OSC on {osc_addr}, pool of {}, state in {}, sets in {}, \
         OSC over {tcp_note}",
        args.name,
        args.pool,
        state_dir.display(),
        sets_path.display()
    );
    if args.standby_seats > 0 {
        say!(
            "modsynthd: standbys of built-in modules sit in standby hosts of {} seats each",
            args.standby_seats
        );
    }
    if !adopted.found.is_empty() {
        let mut workers = Vec::new();
        let mut died = Vec::new();
        let mut unreadable = Vec::new();
        for f in adopted.found {
            died.extend(poller.watch(f.worker.id, f.worker.pid));
            if let Err(e) = poller.listen(f.worker.id, f.receiver) {
                tracing::error!("{e}");
                unreadable.push(f.worker.id);
            }
            workers.push(f.worker);
        }
        let n = workers.len();
        core.adopt(workers, adopted.saved, adopted.counters, &mut runtime);
        say!(
            "modsynthd: took back {n} worker(s) playing {} module(s) in {} ms",
            core.module_count(),
            adopted.took.as_millis()
        );
        for dead in died {
            if let Ready::Died { id, how } = dead {
                core.handle(Event::WorkerDied { id, how }, &mut runtime);
            }
        }
        for id in unreadable {
            core.handle(Event::WorkerGone(id), &mut runtime);
        }
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
    let mut next_bookkeeping = Instant::now();
    let mut ready = Vec::new();
    let mut said = Vec::new();
    loop {
        // At least every 50 ms: the registry, metrics and the stop flag are
        // looked at on every turn.
        let wait = core
            .next_deadline()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(50));
        poller.wait(Some(wait), &mut ready)?;
        let woken_by_events = !ready.is_empty();
        for source in ready.drain(..) {
            match source {
                Ready::Osc => osc.receive(|event| core.handle(event, &mut runtime)),
                Ready::Died { id, how } => core.handle(Event::WorkerDied { id, how }, &mut runtime),
                Ready::Said(id) => {
                    poller.read_channel(id, &mut said);
                    for event in said.drain(..) {
                        core.handle(event, &mut runtime);
                    }
                }
                Ready::Inbox => {
                    for event in inbox.drain() {
                        match &event {
                            // Over TCP: its place in the inbox is free again.
                            Event::Osc { from, .. } => traffic.taken(*from),
                            // Read and watched from now on; one that is gone already
                            // is dead.
                            Event::Spawned(new) => {
                                let id = new.id;
                                let heard = match channels_arriving.take(id) {
                                    Some(channel) => poller.listen(id, channel),
                                    None => Err(format!("worker {id}: no channel")),
                                };
                                let died = poller.watch(id, new.pid);
                                core.handle(event, &mut runtime);
                                if let Some(Ready::Died { id, how }) = died {
                                    core.handle(Event::WorkerDied { id, how }, &mut runtime);
                                } else if let Err(e) = heard {
                                    tracing::error!("{e}: treated as gone");
                                    core.handle(Event::WorkerGone(id), &mut runtime);
                                }
                                continue;
                            }
                            _ => {}
                        }
                        core.handle(event, &mut runtime);
                    }
                }
            }
        }
        core.tick(&mut runtime);
        let leaks = writer.shm_leaks();
        if leaks != core.shm_leaks() {
            core.handle(Event::ShmLeaks(leaks), &mut runtime);
        }
        // While a CC map listens, the loop wakes every quarter period only to drain
        // `midi_in`; the registry and saved.json are looked at after events, and
        // at least every 50 ms, not on each of those turns.
        if woken_by_events || Instant::now() >= next_bookkeeping {
            next_bookkeeping = Instant::now() + Duration::from_millis(50);
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
        }
        if Instant::now() >= next_metrics {
            next_metrics = Instant::now() + METRICS_INTERVAL;
            let mut report = core.status_report();
            report.traffic = traffic.report();
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
