//! `modsynthd`: the modsynth supervisor.

use clap::Parser;
use modsynth_supervisor::core::{Config, Core, Event};
use modsynth_supervisor::jack_client::Jack;
use modsynth_supervisor::osc_server::{self, Clock};
use modsynth_supervisor::runtime::Runtime;
use modsynth_supervisor::spawn::Spawner;
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
    /// Where state lives [default: $XDG_RUNTIME_DIR/modsynth/<name>, else a private
    /// directory under /tmp].
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
}

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
    let worker = match args.worker {
        Some(w) => w,
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
    let state_dir = state_dir(args.state_dir, &args.name)?;

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
    core.start(&mut runtime);

    let mut pool_reported = false;
    let mut shutdown_started: Option<Instant> = None;
    let mut killed = false;
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
    let _ = std::fs::remove_dir(&state_dir);
    say!("modsynthd: stopped");
    Ok(())
}

/// Creates the state directory, private to this user.
fn state_dir(given: Option<PathBuf>, name: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = match given {
        Some(d) => d,
        None => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(run) if !run.is_empty() => PathBuf::from(run).join("modsynth").join(name),
            _ => std::env::temp_dir()
                .join(format!("modsynth-{}", nix::unistd::getuid()))
                .join(name),
        },
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create state dir {}: {e}", dir.display()))?;
    let mode = std::fs::metadata(&dir)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            format!(
                "state dir {} is open to others and cannot be fixed: {e}",
                dir.display()
            )
        })?;
    }
    Ok(dir)
}
