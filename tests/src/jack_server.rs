//! A private JACK server per test: `jackd` with the dummy backend under a unique
//! server name, killed (only that child, by its pid) when the handle is dropped.
//!
//! One server per process at a time: jackd2's libjack keeps the server's engine and
//! graph in process-wide globals that every `jack_client_open` re-points at the
//! server it opens on, so in-process clients of two servers at once corrupt each
//! other (wrong ports, segfaults). Servers themselves can run side by side, and child
//! processes ([`JackServer::command`]) can use any of them; but in-process clients
//! hold a [`ClientLease`] that pins this process to their server, and opening a
//! client on another server waits (up to [`CLIENT_WAIT`]) until every client of the
//! pinned one is closed. Parallel tests therefore take turns for their in-process
//! clients, and a test that wants two servers drives the second through child
//! processes.
//!
//! Picking the server: rust-jack's `ClientOptions::SERVER_NAME` does not reach
//! libjack (the varargs are not passed), so every harness client is opened through
//! [`JackServer::open_client`], which calls libjack's variadic `jack_client_open`
//! itself with the server's name; nothing changes this process's environment. Child
//! processes get `JACK_DEFAULT_SERVER` in theirs through [`JackServer::command`].
//!
//! On PipeWire (opt-in, `scripts/test --pipewire`): with `MODSYNTH_TEST_PIPEWIRE` set
//! to a PipeWire config (`scripts/pipewire/headless.conf`) and PipeWire's libjack
//! first on `LD_LIBRARY_PATH` (as `pw-jack` does), every server is a headless
//! `pipewire` instead, with a runtime dir of its own whose socket is named like the
//! server: clients reach it through `PIPEWIRE_RUNTIME_DIR` and `PIPEWIRE_REMOTE`
//! (PipeWire's libjack ignores `JACK_DEFAULT_SERVER`). It takes the same
//! machine-wide turn.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long [`jack_turn`] waits for another test's turn to end.
pub const TURN_WAIT: Duration = Duration::from_secs(20 * 60);

/// Default sample rate of [`JackServer::start`].
pub const DEFAULT_SAMPLE_RATE: u32 = 48_000;
/// Default period (frames per cycle) of [`JackServer::start`]: 256 frames (5.3 ms),
/// what people play at. Tests run their servers real-time (`jackd -R`, see
/// [`REALTIME_VAR`]) as a user's server runs: on this 2-core virtual machine a
/// non-real-time server at 256 frames misses cycles whenever a thread wakes late
/// (the demo set: 397 clients not finished in 20 s), a real-time one does not (0 in
/// 20 s). A test that needs another period says why and passes it to
/// [`JackServer::start_with`].
pub const DEFAULT_PERIOD: u32 = 256;
/// How long [`JackServer::start`] waits for the server to accept clients.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`JackServer::open_client`] waits for in-process clients of another
/// server to close (see the module docs).
pub const CLIENT_WAIT: Duration = Duration::from_secs(300);

/// Which server this process's in-process clients are pinned to, and how many
/// leases are out.
struct Pin {
    server: Option<String>,
    leases: usize,
}

static PIN: Mutex<Pin> = Mutex::new(Pin {
    server: None,
    leases: 0,
});
static PIN_RELEASED: Condvar = Condvar::new();

fn lock_pin() -> MutexGuard<'static, Pin> {
    PIN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pins this process's in-process JACK clients to one server while alive (see the
/// module docs). Drop it only after the client it came with is closed; [`Capture`]
/// and [`Player`] keep theirs for you.
///
/// [`Capture`]: crate::capture::Capture
/// [`Player`]: crate::player::Player
#[derive(Debug)]
pub struct ClientLease {
    _private: (),
}

impl Drop for ClientLease {
    fn drop(&mut self) {
        let mut pin = lock_pin();
        pin.leases -= 1;
        if pin.leases == 0 {
            pin.server = None;
            PIN_RELEASED.notify_all();
        }
    }
}

/// A JACK client opened by [`JackServer::open_client`], with the lease that keeps
/// the process pinned to its server. Derefs to [`jack::Client`]; use
/// [`LeasedClient::into_parts`] to activate it, and keep the lease until the
/// activated client is dropped.
pub struct LeasedClient {
    client: jack::Client,
    lease: ClientLease,
}

impl LeasedClient {
    /// The client and its lease. Drop the client first.
    pub fn into_parts(self) -> (jack::Client, ClientLease) {
        (self.client, self.lease)
    }
}

impl std::fmt::Debug for LeasedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedClient")
            .field("name", &self.client.name())
            .finish()
    }
}

impl std::ops::Deref for LeasedClient {
    type Target = jack::Client;
    fn deref(&self) -> &jack::Client {
        &self.client
    }
}

/// The PipeWire config to start test servers with, when the run is on PipeWire
/// (see the module docs).
pub fn pipewire_config() -> Option<PathBuf> {
    std::env::var_os("MODSYNTH_TEST_PIPEWIRE").map(PathBuf::from)
}

/// Serialises the harness's `jack_client_open` calls.
static CLIENT_OPEN_LOCK: Mutex<()> = Mutex::new(());
/// Private `jackd` servers run real-time (`-R`: the server's and its clients'
/// process threads at SCHED_FIFO), as a user's server does, unless this variable is
/// `0`. Where the privilege is missing jackd says so in its log and runs its
/// threads at normal priority: the tests still run, with more disturbed cycles.
pub const REALTIME_VAR: &str = "MODSYNTH_JACK_REALTIME";
/// With this variable set, private `jackd` servers log verbosely (`-v`) into their
/// log ([`JackServer::log_path`]): client kills, graph switches, clients not
/// finished, the trace of what a failover does to the graph.
pub const VERBOSE_VAR: &str = "MODSYNTH_JACKD_VERBOSE";

/// Makes server names unique within the process.
static SERVER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A running private `jackd` (dummy backend, real-time unless [`REALTIME_VAR`] is
/// `0`).
///
/// Dropping it sends SIGTERM to that child only, waits up to 10 s (a SIGKILLed jackd
/// leaves its shared memory behind), then SIGKILLs it
/// and reaps it.
#[derive(Debug)]
pub struct JackServer {
    name: String,
    sample_rate: u32,
    period: u32,
    child: Child,
    dir: PathBuf,
    log_path: PathBuf,
    /// The claim on this server's name; released when the server is gone.
    _slot: nix::fcntl::Flock<fs::File>,
    /// This test's turn at JACK (see [`jack_turn`]); released last, when the
    /// server is gone.
    _turn: std::sync::Arc<Turn>,
}

impl JackServer {
    /// Starts a server at 48 kHz with [`DEFAULT_PERIOD`]-frame periods and waits until it accepts
    /// clients.
    pub fn start() -> Result<JackServer, String> {
        Self::start_with(DEFAULT_SAMPLE_RATE, DEFAULT_PERIOD)
    }

    /// Starts a server at `sample_rate` with `period`-frame cycles:
    /// `jackd -n <unique> -r -d dummy -r <sample_rate> -p <period>`, and waits (up to
    /// [`START_TIMEOUT`]) until it accepts clients. Errors carry the tail of the
    /// server's log.
    pub fn start_with(sample_rate: u32, period: u32) -> Result<JackServer, String> {
        let turn = jack_turn()?;
        let (name, slot) = claim_server_name(CLIENT_WAIT)?;
        let dir = std::env::temp_dir().join(format!("modsynth-{name}"));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let log_path = dir.join("jackd.log");
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cloning log file: {e}"))?;
        let mut cmd = match pipewire_config() {
            Some(config) => {
                // PipeWire insists on a private runtime dir.
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                // In-process clients are opened with the server's name, which
                // PipeWire's libjack may take for the remote's; else it reads these.
                std::env::set_var("PIPEWIRE_RUNTIME_DIR", &dir);
                std::env::set_var("PIPEWIRE_REMOTE", &name);
                let mut cmd = Command::new("pipewire");
                cmd.arg("-c")
                    .arg(config)
                    .env("PIPEWIRE_CORE", &name)
                    .env("XDG_RUNTIME_DIR", &dir)
                    .env("HOME", &dir)
                    .env("PIPEWIRE_QUANTUM", format!("{period}/{sample_rate}"))
                    .env_remove("LD_LIBRARY_PATH");
                cmd
            }
            None => {
                // As a user's server gets once modsynthd has run: room in the metadata
                // database for the clients the tests SIGKILL (see metadata_room).
                let env = modsynth_supervisor::metadata_deadlocks::environment();
                modsynth_supervisor::metadata_room::make_room(&env)
                    .map_err(|e| format!("making room in {}: {e}", env.display()))?;
                let mut cmd = Command::new("jackd");
                let realtime = std::env::var(REALTIME_VAR).map_or(true, |v| v != "0");
                if std::env::var_os(VERBOSE_VAR).is_some() {
                    cmd.arg("-v");
                }
                cmd.args([
                    "-n",
                    &name,
                    if realtime { "-R" } else { "-r" },
                    "-d",
                    "dummy",
                ])
                .args(["-r", &sample_rate.to_string(), "-p", &period.to_string()])
                .env("JACK_NO_AUDIO_RESERVATION", "1");
                cmd
            }
        };
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let spawned = spawn_tied_to_process(cmd);
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(if e.kind() == std::io::ErrorKind::NotFound {
                    "jackd is not installed (not found on PATH): run scripts/setup".to_string()
                } else {
                    format!("spawning jackd: {e}")
                });
            }
        };
        let mut server = JackServer {
            name,
            sample_rate,
            period,
            child,
            dir,
            log_path,
            _slot: slot,
            _turn: turn,
        };
        server.wait_ready(Instant::now() + START_TIMEOUT)?;
        Ok(server)
    }

    /// Polls by opening a client until the server answers, the child exits, or the
    /// deadline passes.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "jackd '{}' exited during start-up ({status}); log tail:\n{}",
                        self.name,
                        self.log_tail()
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for jackd: {e}")),
            }
            if self.answers()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "jackd '{}' did not accept clients within {:?}; log tail:\n{}",
                    self.name,
                    START_TIMEOUT,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server accepts clients: `jack_lsp` in a child process (so the
    /// probe takes no [`ClientLease`]), or an in-process client if `jack_lsp` is not
    /// installed.
    fn answers(&self) -> Result<bool, String> {
        let status = self
            .command("jack_lsp")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) => Ok(status.success()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let probe = format!("probe-{}", SERVER_COUNTER.fetch_add(1, Ordering::Relaxed));
                Ok(self.open_client(&probe).is_ok())
            }
            Err(e) => Err(format!("running jack_lsp: {e}")),
        }
    }

    /// The server name (what `JACK_DEFAULT_SERVER` must be set to).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sample rate the server was started with.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The period (frames per cycle) the server was started with.
    pub fn period(&self) -> u32 {
        self.period
    }

    /// The pid of the `jackd` child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the server's log (stdout and stderr of `jackd`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last ~4 KiB of the server's log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log_path, 4096)
    }

    /// Whether the `jackd` child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A [`Command`] for `program` whose process talks to this server:
    /// `JACK_DEFAULT_SERVER`, `JACK_NO_AUDIO_RESERVATION=1` and
    /// `JACK_NO_START_SERVER=1` (so a child never starts a default server behind the
    /// test's back) are set in its environment, not in this process's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("JACK_DEFAULT_SERVER", &self.name)
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .env("JACK_NO_START_SERVER", "1");
        if pipewire_config().is_some() {
            cmd.env("PIPEWIRE_RUNTIME_DIR", &self.dir)
                .env("PIPEWIRE_REMOTE", &self.name);
        }
        cmd
    }

    /// Opens a (not yet activated) client named exactly `name` on this server, with
    /// `NO_START_SERVER | USE_EXACT_NAME`.
    ///
    /// First takes a [`ClientLease`] on this server, waiting up to [`CLIENT_WAIT`]
    /// while in-process clients of another server are open (libjack serves one
    /// server per process; see the module docs). Then `jack_client_open` is called
    /// with this server's name (`JackServerName`). Every in-process harness client
    /// must be opened through here.
    pub fn open_client(&self, name: &str) -> Result<LeasedClient, String> {
        self.open_client_timeout(name, CLIENT_WAIT)
    }

    /// [`JackServer::open_client`] waiting at most `wait` for the lease.
    pub fn open_client_timeout(&self, name: &str, wait: Duration) -> Result<LeasedClient, String> {
        let lease = self.lease(wait)?;
        let client = self.open_unleased(name)?;
        Ok(LeasedClient { client, lease })
    }

    /// Takes a lease pinning this process's in-process clients to this server.
    fn lease(&self, wait: Duration) -> Result<ClientLease, String> {
        let deadline = Instant::now() + wait;
        let mut pin = lock_pin();
        loop {
            match &pin.server {
                None => pin.server = Some(self.name.clone()),
                Some(s) if *s == self.name => {}
                Some(other) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(format!(
                            "cannot open a client on JACK server '{}': this process still has \
                             clients of server '{other}' open, and libjack talks to one server \
                             per process (close them first, or use a child process via \
                             JackServer::command)",
                            self.name
                        ));
                    }
                    pin = PIN_RELEASED
                        .wait_timeout(pin, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
            }
            pin.leases += 1;
            return Ok(ClientLease { _private: () });
        }
    }

    /// `jack_client_open` on this server, without a lease.
    fn open_unleased(&self, name: &str) -> Result<jack::Client, String> {
        let _guard = CLIENT_OPEN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let options = jack::ClientOptions::NO_START_SERVER | jack::ClientOptions::USE_EXACT_NAME;
        if pipewire_config().is_some() {
            // PipeWire's libjack finds the server through PIPEWIRE_RUNTIME_DIR and
            // PIPEWIRE_REMOTE (set when the server started); given a server name as
            // well, its second and later servers in one process refused clients
            // (INIT_FAILURE).
            return jack::Client::new(name, options)
                .map(|(client, _)| client)
                .map_err(|e| format!("opening JACK client '{name}' on PipeWire: {e}"));
        }
        let raw = open_on_server(&self.name, name, options.bits())?;
        // SAFETY: `raw` is a client jack_client_open just returned (not null, not owned
        // by anything else); the `Client` owns it from here and closes it on drop.
        Ok(unsafe { jack::Client::from_raw(raw) })
    }
}

/// `jack_client_open(name, options | JackServerName, &status, server)`, called
/// through libjack's own symbol: rust-jack cannot pass the server name (the
/// function is variadic and jack-sys binds it without the varargs), and setting
/// `JACK_DEFAULT_SERVER` in this multi-threaded process would race with every
/// thread that reads the environment (spawning a child does).
fn open_on_server(
    server: &str,
    name: &str,
    options: u32,
) -> Result<*mut jack::jack_sys::jack_client_t, String> {
    use std::ffi::{c_char, c_int, c_void, CString};
    /// `JackServerName` in jack/types.h: the next vararg names the server.
    const JACK_SERVER_NAME: c_int = 0x04;
    type ClientOpen = unsafe extern "C" fn(
        *const c_char,
        c_int,
        *mut c_int,
        ...
    ) -> *mut jack::jack_sys::jack_client_t;
    static OPEN: OnceLock<Result<ClientOpen, String>> = OnceLock::new();
    let open = OPEN
        .get_or_init(|| {
            // SAFETY: dlopen/dlsym with NUL-terminated names. libjack.so.0 is the
            // library rust-jack loads too (same soname, so the same instance in
            // this process); the handle is never closed, so the symbol stays valid.
            unsafe {
                let lib = libc::dlopen(c"libjack.so.0".as_ptr(), libc::RTLD_NOW);
                if lib.is_null() {
                    return Err("cannot load libjack.so.0: run scripts/setup".to_string());
                }
                let sym: *mut c_void = libc::dlsym(lib, c"jack_client_open".as_ptr());
                if sym.is_null() {
                    return Err("libjack.so.0 has no jack_client_open".to_string());
                }
                Ok(std::mem::transmute::<*mut c_void, ClientOpen>(sym))
            }
        })
        .clone()?;
    let c_name = CString::new(name).map_err(|_| format!("client name {name:?} has a NUL"))?;
    let c_server = CString::new(server).map_err(|_| format!("server name {server:?} has a NUL"))?;
    let mut status: c_int = 0;
    // SAFETY: the signature is jack_client_open's (jack/jack.h); with JackServerName
    // set it reads exactly one vararg, a NUL-terminated server name, which lives
    // until the call returns.
    let raw = unsafe {
        open(
            c_name.as_ptr(),
            options as c_int | JACK_SERVER_NAME,
            &mut status,
            c_server.as_ptr(),
        )
    };
    if raw.is_null() {
        Err(format!(
            "opening JACK client '{name}' on server '{server}': {:?}",
            jack::ClientStatus::from_bits_truncate(status as u32)
        ))
    } else {
        Ok(raw)
    }
}

/// One test's turn at JACK, machine-wide: an exclusive `flock` on
/// `$TMPDIR/modsynth-jack-slots-<uid>/turn.lock`, held while any [`JackServer`] the
/// turn's thread started is alive (see [`jack_turn`]).
///
/// Why the whole machine and not one test binary: every private server's cycles,
/// every worker and every capture compete for the same two cores. Run side by side,
/// audio tests disturbed each other's recordings (dropped periods, dozens of xruns
/// per recording) until a test gave up: 3 of 5 suite runs failed by chance. Tests
/// that need no JACK server take no turn and stay parallel. One server at a time
/// also gives each test the user's JACK metadata database to itself: jackd2 keeps
/// one database per user while client uuids are per server, so clients of two
/// servers running at once overwrite each other's pretty-names.
#[derive(Debug)]
pub struct Turn {
    _lock: nix::fcntl::Flock<fs::File>,
    /// When it began, and the test (thread) that took it, for `MODSYNTH_TURN_LOG`.
    began: Instant,
    test: String,
}

impl Drop for Turn {
    /// With `MODSYNTH_TURN_LOG=<file>`, appends how long the test held its turn: the
    /// suite's JACK tests run one at a time, so these lines are where its time goes.
    fn drop(&mut self) {
        let Some(path) = std::env::var_os("MODSYNTH_TURN_LOG") else {
            return;
        };
        let line = format!("{:8.3} {}\n", self.began.elapsed().as_secs_f64(), self.test);
        let file = fs::OpenOptions::new().create(true).append(true).open(path);
        if let Ok(mut file) = file {
            use std::io::Write;
            let _ = file.write_all(line.as_bytes());
        }
    }
}

thread_local! {
    /// The turn this thread holds, if any: servers it starts share it, so a test
    /// that runs two servers at once (from one thread) does not wait for itself.
    static THREAD_TURN: std::cell::RefCell<std::sync::Weak<Turn>> =
        const { std::cell::RefCell::new(std::sync::Weak::new()) };
}

/// Takes this thread's turn at JACK, waiting while another test (in this process or
/// any other of the user's) has one; returns the turn the thread already holds if it
/// has one. The turn ends when the last clone is dropped, on any thread.
///
/// [`JackServer::start`] takes it for you. Call it yourself only around a JACK
/// server the harness does not start (a script that starts its own `jackd`), and
/// start servers from the thread that holds it.
///
/// ```no_run
/// use modsynth_tests::jack_server::jack_turn;
///
/// let _turn = jack_turn().unwrap();
/// // ... run a script that starts and stops its own jackd: no other test's server
/// // runs meanwhile.
/// ```
pub fn jack_turn() -> Result<std::sync::Arc<Turn>, String> {
    if let Some(turn) = THREAD_TURN.with(|t| t.borrow().upgrade()) {
        return Ok(turn);
    }
    let path = slots_dir()?.join("turn.lock");
    let file = open_lock_file(&path)?;
    // Waits until the test holding the turn is done; a test that crashed holds
    // nothing (the kernel drops a dead process's locks). The deadline turns a
    // thread that waits for its own test's turn (a server started from a spawned
    // thread while the test holds one) into an error instead of a hang.
    let deadline = Instant::now() + TURN_WAIT;
    let mut file = file;
    let lock = loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = back;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, e)) => {
                return Err(format!(
                    "no turn at JACK ({}) within {TURN_WAIT:?}: {e}; another test held it \
                     all that time, or this test started a server from a thread that does \
                     not hold its turn",
                    path.display()
                ))
            }
        }
    };
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let turn = std::sync::Arc::new(Turn {
        _lock: lock,
        began: Instant::now(),
        test,
    });
    THREAD_TURN.with(|t| *t.borrow_mut() = std::sync::Arc::downgrade(&turn));
    Ok(turn)
}

/// Opens (creating it if needed) a file that is only ever `flock`ed.
fn open_lock_file(path: &Path) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// Where the server-name slots and the turn lock live.
fn slots_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("modsynth-jack-slots-{}", nix::unistd::getuid()));
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

impl Drop for JackServer {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(None) = self.child.try_wait() {
            // Only our own child, by its pid; it has not been reaped, so the pid is ours.
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match self.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = self.child.kill(); // SIGKILL
                        let _ = self.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        if std::env::var_os("MODSYNTH_KEEP_JACK_LOGS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A request to the spawner thread: the command, and where to send the child.
type SpawnRequest = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that the child gets SIGKILL when this process dies, even by a
/// crash that skips every `Drop` (no orphaned `jackd` holding one of JACK's 8 server
/// slots). `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, so the fork
/// happens on one helper thread that lives as long as the process.
fn spawn_tied_to_process(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<std::sync::mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("jackd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: the closure only makes a prctl system call, which is
                    // async-signal-safe, between fork and exec.
                    unsafe {
                        cmd.pre_exec(|| {
                            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                                .map_err(std::io::Error::from)
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the jackd-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("jackd-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("jackd-spawner thread is gone"))?
}

/// How many private servers the harness runs at once, machine-wide. JACK's
/// registry holds 8 servers; two stay free for servers that are not ours.
pub const SERVER_SLOTS: usize = 6;

/// Claims one of [`SERVER_SLOTS`] server names (`msjack-<n>`), held by an exclusive
/// `flock` until the returned lock is dropped; waits while all are in use.
///
/// Why not a fresh name per server: jackd's registry (`/dev/shm/jack-shm-registry`)
/// frees the entry of a server that died without unregistering (SIGKILL, a killed
/// test process) only when a server of the *same name* starts again. Unique names
/// leaked one of the 8 entries per unclean death until no server could start
/// ("Too many servers already active"); reused names reclaim their own entries.
fn claim_server_name(wait: Duration) -> Result<(String, nix::fcntl::Flock<fs::File>), String> {
    let dir = slots_dir()?;
    let deadline = Instant::now() + wait;
    loop {
        for slot in 0..SERVER_SLOTS {
            let file = open_lock_file(&dir.join(format!("slot-{slot}.lock")))?;
            if let Ok(lock) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                return Ok((format!("msjack-{slot}"), lock));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "all {SERVER_SLOTS} private JACK server slots stayed busy for {wait:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `max` bytes of a file, lossily decoded; a note if it cannot be read.
fn file_tail(path: &Path, max: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}
