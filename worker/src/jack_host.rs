//! Runs [`Engine`]s inside a JACK client.
//!
//! A [`Host`] is one active JACK client and its seats: each seat is one module's
//! part (its engine's controller, its ports and their names). An ordinary worker's
//! host has one seat and names its client after the module it plays; a standby
//! host (`modsynth-worker --pool --seats N`) has N, created before activation, and
//! stands by for up to N modules in one client: one context switch per period for
//! all of them instead of one per standby (issue 14). A seat's ports carry a seat
//! prefix (`s1-out`: port names are unique inside a client), and its modules' names
//! are on the ports, since the client's pretty-name cannot name N modules.
//!
//! The JACK process callback does nothing but hand JACK's buffers to the engines. In
//! builds with debug assertions and the `rt-alloc-check` feature (the default), the
//! callback runs inside `assert_no_alloc`, so an allocation on the real-time thread
//! aborts the worker instead of passing unnoticed.

use crate::dsp::{Io, Module};
use crate::engine::{self, Controller, Engine, Ports};
use crate::shared_state::SharedState;
use modsynth_model::catalog::{Direction, ModuleSpec, Signal, MAX_INPUTS, MAX_OUTPUTS};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a module's state lives.
pub enum StatePlan<'a> {
    /// In the worker only: no failover.
    None,
    /// In a new shared-memory segment of this name, owned by this worker.
    Create(&'a str),
    /// In the existing segment of this name (a standby).
    Open(&'a str),
}

/// The JACK metadata key qjackctl and Carla show as a client's or port's name.
pub const PRETTY_NAME: &str = "http://jackaudio.org/metadata/pretty-name";

/// Strips a freed module's name and connections from `port`; a pooled worker keeps
/// it under its generic name in `kept` for the next module, any other unregisters it.
fn release_port<PS>(
    client: &jack::Client,
    mut port: jack::Port<PS>,
    direction: &str,
    kept: &mut Vec<jack::Port<PS>>,
    pooled: bool,
) {
    // Every connection, in and out, made by modsynth or by hand: the next module on
    // this worker starts unpatched, and nothing still listens to this one.
    if let Err(e) = client.disconnect(&port) {
        tracing::warn!("cannot disconnect a freed module's port: {e}");
    }
    // A kept port is labelled with its generic name rather than unlabelled: PipeWire
    // 0.3.65 did not pass a removal of a name set long before on to other clients
    // (a freed worker's `in_1` still showed `pitch` 10 s later), while a new name
    // always arrived.
    if pooled {
        label_port(client, &port, &generic_name(direction, kept.len()));
    } else {
        remove_name(client, port_uuid(&port));
    }
    if let Some(alias) = port.aliases().ok().and_then(|a| a.into_iter().next()) {
        let _ = port.unset_alias(&alias);
    }
    if pooled {
        // The port kept its generic name (`in_3`) while it played: it goes back to
        // the spares as it is, in its place.
        debug_assert_eq!(
            port.name()
                .ok()
                .and_then(|n| n.rsplit(':').next().map(str::to_string)),
            Some(generic_name(direction, kept.len()))
        );
        kept.push(port);
    } else {
        let _ = client.unregister_port(port);
    }
}

/// Gives `port` the alias `alias` (`<module>:<port>`, for jackd2's name lookups) and
/// its own name `short` (`out`) as pretty-name: patchbays show it inside the box of
/// the module's client, so repeating the module there only adds noise.
fn name_port<PS>(client: &jack::Client, port: &mut jack::Port<PS>, alias: &str, short: &str) {
    // PipeWire keeps aliases a client sets on its own ports to itself, and setting
    // one there lost a pretty-name set right after it (seen: a random port of a new
    // primary without its name; standbys, which get no aliases, never).
    if !on_pipewire() {
        if let Err(e) = port.set_alias(alias) {
            tracing::warn!("cannot alias a port as {alias}: {e}");
        }
    }
    label_port(client, port, short);
}

/// Whether the libjack this process loaded is PipeWire's (its version string says
/// `3.0.0.0 (using PipeWire 0.3.65)`); asked once.
pub fn on_pipewire() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library already
        // loaded (rust-jack loaded libjack.so.0 before any client exists), or null.
        // The symbol, if found, has jack_get_version_string's C signature and
        // returns a static string; the handle is closed after use.
        unsafe {
            let handle = libc::dlopen(
                c"libjack.so.0".as_ptr(),
                libc::RTLD_NOLOAD | libc::RTLD_LAZY,
            );
            if handle.is_null() {
                return false;
            }
            let symbol = libc::dlsym(handle, c"jack_get_version_string".as_ptr());
            let answer = !symbol.is_null() && {
                let version: extern "C" fn() -> *const c_char = std::mem::transmute(symbol);
                let text = version();
                !text.is_null()
                    && std::ffi::CStr::from_ptr(text)
                        .to_string_lossy()
                        .contains("PipeWire")
            };
            libc::dlclose(handle);
            answer
        }
    })
}

/// Removes the pretty-name of `subject` (see [`Host::settle_names`] for PipeWire).
fn remove_name(client: &jack::Client, subject: jack::jack_sys::jack_uuid_t) {
    let _ = client.property_remove(subject, PRETTY_NAME);
}

/// Removes a name `subject` may carry from a dead object. Used on ports just
/// registered and on ports about to be unregistered. On PipeWire, which keeps the
/// metadata of dead ports and reuses their ids, always; on jackd2 only a name that
/// is there (read first), which is rare.
///
/// On jackd2 the server itself removes a port's properties when the port is
/// unregistered, and a client's when it closes, so there is nothing to remove
/// unless that removal was the request the deadlock detector failed (see below);
/// and every metadata write there can deadlock the server (issue 18). jackd2 1.9.21
/// keeps metadata in a Berkeley DB without a deadlock detector: its request thread
/// walks the whole database with a cursor at every port unregistration and client
/// close, and a client's write at the same moment can lock in the opposite order.
/// Seen with gdb while 32-module sets loaded: the server thread waiting in
/// `PortUnRegister` -> `__ham_get_meta`, a starting spare in `jack_remove_property`
/// -> `__ham_get_meta`, forever; no client could open, close or connect again, and
/// a client that died after it stayed in the graph (`not finished, state =
/// Triggered`) until jackd was killed. A spare start made six such removals.
fn remove_stale_name(client: &jack::Client, subject: jack::jack_sys::jack_uuid_t) {
    if on_pipewire() || client.property_get(subject, PRETTY_NAME).is_some() {
        remove_name(client, subject);
    }
}

/// Sets the pretty-name of `subject` to `name`, trying up to three times: on jackd2
/// a write that lands in a lock cycle with the server is failed by the deadlock
/// detector `modsynthd` runs (`DB_LOCK_DEADLOCK`, see `metadata_deadlocks` in the
/// supervisor), and the next try finds the cycle gone.
fn set_name(
    client: &jack::Client,
    subject: jack::jack_sys::jack_uuid_t,
    name: &str,
) -> Result<(), jack::Error> {
    let pretty = jack::Property::new(name, None);
    let mut result = client.property_set(subject, PRETTY_NAME, &pretty);
    for _ in 1..3 {
        if result.is_ok() {
            break;
        }
        result = client.property_set(subject, PRETTY_NAME, &pretty);
    }
    result
}

/// Sets the pretty-name of `port` to `short`.
fn label_port<PS>(client: &jack::Client, port: &jack::Port<PS>, short: &str) {
    if let Err(e) = set_name(client, port_uuid(port), short) {
        tracing::warn!("cannot set the pretty-name {short}: {e}");
    }
}

/// The pretty-name of a pool spare's client: it plays nothing.
pub const SPARE_LABEL: &str = "spare";

/// The pretty-name of module `id`'s hot standby's client.
pub fn standby_label(id: &str) -> String {
    format!("{id} (standby)")
}

/// The pretty-name of a standby host's client: its seats' modules name their ports.
pub const HOST_LABEL: &str = "standby host";

/// The prefix of seat `seat`'s port names in a standby host (`s1-`: `s1-out`).
pub fn seat_prefix(seat: usize) -> String {
    format!("s{seat}-")
}

/// The JACK uuid of a port (rust-jack has no safe call for it).
fn port_uuid<PS>(port: &jack::Port<PS>) -> jack::jack_sys::jack_uuid_t {
    // SAFETY: `port.raw()` is a valid jack_port_t for as long as `port` is registered,
    // which it is while we hold it; jack_port_uuid only reads it.
    unsafe { jack::jack_sys::jack_port_uuid(port.raw()) }
}

/// How many generic outputs a warm spare keeps: enough for every module but
/// `midi2cv`, which registers the rest when it is assigned. Every port a spare keeps
/// costs a latency pass of the whole graph when it is registered, and the unused
/// ones another when they are unregistered after an assignment.
pub const SPARE_OUTPUTS: usize = 2;

/// The JACK ports of one module, in catalog order.
pub struct JackPorts {
    /// The input ports, in the order the kernel reads them.
    pub inputs: Vec<jack::Port<jack::AudioIn>>,
    /// The output ports, in the order the kernel writes them.
    pub outputs: Vec<jack::Port<jack::AudioOut>>,
    /// The MIDI input, for modules that have one (registered on assignment: no
    /// spare keeps one).
    pub midi: Option<jack::Port<jack::MidiIn>>,
    /// The MIDI input's messages of the current period, copied out of JACK's
    /// buffer into storage allocated here, off the real-time thread.
    pub midi_events: crate::midi::MidiEvents,
}

/// The generic name of a module's MIDI input on a worker (`in_midi`: patching
/// tells inputs by `:in_`).
pub const MIDI_PORT: &str = "in_midi";

impl JackPorts {
    fn empty() -> JackPorts {
        JackPorts {
            inputs: Vec::new(),
            outputs: Vec::new(),
            midi: None,
            midi_events: crate::midi::MidiEvents::new(),
        }
    }

    /// The port names in catalog order (what `spec.ports[i]` is on JACK).
    fn names_in_catalog_order(&self, spec: &ModuleSpec) -> Vec<String> {
        let (mut inputs, mut outputs) = (self.inputs.iter(), self.outputs.iter());
        spec.ports
            .iter()
            .map(|p| {
                let name = match (p.direction, p.signal) {
                    (Direction::In, Signal::Midi) => self.midi.as_ref().map(|p| p.name()),
                    (Direction::In, _) => inputs.next().map(|p| p.name()),
                    (Direction::Out, _) => outputs.next().map(|p| p.name()),
                };
                name.and_then(Result::ok).unwrap_or_default()
            })
            .collect()
    }

    /// Unowned handles to the ports in catalog order.
    fn handles_in_catalog_order(&self, spec: &ModuleSpec) -> Vec<jack::Port<jack::Unowned>> {
        let (mut inputs, mut outputs) = (self.inputs.iter(), self.outputs.iter());
        spec.ports
            .iter()
            .filter_map(|p| match (p.direction, p.signal) {
                (Direction::In, Signal::Midi) => self.midi.as_ref().map(|p| p.clone_unowned()),
                (Direction::In, _) => inputs.next().map(|p| p.clone_unowned()),
                (Direction::Out, _) => outputs.next().map(|p| p.clone_unowned()),
            })
            .collect()
    }

    /// Registers `spec`'s ports on `client` under their catalog names, each after
    /// `prefix` (a seat's, see [`seat_prefix`]; `""` for a worker's one module).
    /// Ports registered before a failure are unregistered again.
    pub fn register(
        client: &jack::Client,
        spec: &ModuleSpec,
        prefix: &str,
    ) -> Result<JackPorts, jack::Error> {
        let mut ports = JackPorts::empty();
        let result = ports.register_all(client, spec, prefix);
        if let Err(e) = result {
            ports.unregister(client);
            return Err(e);
        }
        Ok(ports)
    }

    fn register_all(
        &mut self,
        client: &jack::Client,
        spec: &ModuleSpec,
        prefix: &str,
    ) -> Result<(), jack::Error> {
        let name = |short: &str| format!("{prefix}{short}");
        if let Some(p) = spec.midi_input() {
            self.midi = Some(client.register_port(&name(p.name), jack::MidiIn::default())?);
        }
        for p in spec.input_ports() {
            let port = client.register_port(&name(p.name), jack::AudioIn::default())?;
            self.inputs.push(port);
        }
        for p in spec.output_ports() {
            let port = client.register_port(&name(p.name), jack::AudioOut::default())?;
            self.outputs.push(port);
        }
        Ok(())
    }

    /// Unregisters every port (their names go first: see `unregister_unused`).
    fn unregister(self, client: &jack::Client) {
        let JackPorts {
            inputs,
            outputs,
            midi,
            ..
        } = self;
        for port in inputs {
            remove_stale_name(client, port_uuid(&port));
            let _ = client.unregister_port(port);
        }
        for port in outputs {
            remove_stale_name(client, port_uuid(&port));
            let _ = client.unregister_port(port);
        }
        if let Some(port) = midi {
            remove_stale_name(client, port_uuid(&port));
            let _ = client.unregister_port(port);
        }
    }

    /// Registers the generic ports a warm spare holds: `in_1..in_4`, `out_1..out_2`
    /// (see [`SPARE_OUTPUTS`]). See [`Host::keep_spare_ports`].
    fn register_generic(client: &jack::Client) -> Result<JackPorts, jack::Error> {
        let mut ports = JackPorts::empty();
        ports.top_up(client, SPARE_OUTPUTS)?;
        Ok(ports)
    }

    /// Registers generic ports until there are `MAX_INPUTS` inputs and `outputs`
    /// outputs.
    ///
    /// PipeWire keeps the metadata of dead ports and reuses their ids, so a new port
    /// may be born with a dead worker's pretty-name (seen: a new spare's `in_3`
    /// labelled `tone:out`): it is removed. By key: PipeWire 0.3.65's
    /// `jack_remove_properties` reports success and removes nothing (tried). Not
    /// replaced by a name: on PipeWire a name set on a port just registered landed
    /// on another object (other clients saw `in_3` on no port, in 2 of 2 runs).
    fn top_up(&mut self, client: &jack::Client, outputs: usize) -> Result<(), jack::Error> {
        while self.inputs.len() < MAX_INPUTS {
            let name = generic_name("in", self.inputs.len());
            let port = client.register_port(&name, jack::AudioIn::default())?;
            remove_stale_name(client, port_uuid(&port));
            self.inputs.push(port);
        }
        while self.outputs.len() < outputs.min(MAX_OUTPUTS) {
            let name = generic_name("out", self.outputs.len());
            let port = client.register_port(&name, jack::AudioOut::default())?;
            remove_stale_name(client, port_uuid(&port));
            self.outputs.push(port);
        }
        Ok(())
    }
}

/// `in_1`, `out_2`, ...: the neutral name of a spare's `index`th port.
fn generic_name(direction: &str, index: usize) -> String {
    format!("{direction}_{}", index + 1)
}

impl Ports for JackPorts {
    type Scope = jack::ProcessScope;

    fn bind<'a>(&'a mut self, n_frames: usize, scope: &'a jack::ProcessScope) -> Io<'a> {
        self.midi_events.clear();
        if let Some(port) = &self.midi {
            for event in port.iter(scope) {
                self.midi_events.push(event.time, event.bytes, n_frames);
            }
        }
        let mut io = Io::empty();
        io.midi = self.midi_events.as_slice();
        for (slot, port) in io.inputs.iter_mut().zip(&self.inputs) {
            *slot = port.as_slice(scope);
        }
        for (slot, port) in io.outputs.iter_mut().zip(&mut self.outputs) {
            *slot = port.as_mut_slice(scope);
        }
        io
    }
}

/// What the host's JACK callbacks observed (the process callback, and the
/// shutdown notice).
#[derive(Debug, Default)]
pub struct HostEvents {
    /// Cycles this client was not called for: the frame time of a period was not
    /// where the last one ended (the server skipped or dropped cycles). Counted by
    /// the process callback itself, not by JACK's xrun notification: a client that
    /// asks for that notification has its notification thread woken for every xrun
    /// of the whole server, in every worker (about 3 wake-ups per xrun each,
    /// measured with 32 modules: 171 a second per worker on a loaded server).
    pub xruns: AtomicU64,
    /// Set when the server shut the client down.
    pub shut_down: AtomicBool,
    /// Microseconds spent inside the process callback, in total: this worker's own
    /// DSP load, unlike `jack_cpu_load`, which is the whole server's.
    pub busy_us: AtomicU64,
}

/// What the JACK callbacks reach through their `arg` pointer.
struct CallbackState {
    /// One engine per seat, all made before activation: the callback never
    /// allocates, and an empty seat's engine returns after one atomic load.
    engines: Box<[Engine<JackPorts>]>,
    /// The frame time the next cycle starts on if none is missed (`None` before
    /// the first cycle).
    next_frame: Option<u32>,
    client: *mut jack::jack_sys::jack_client_t,
    events: Arc<HostEvents>,
    on_shutdown: Box<dyn Fn() + Send + Sync>,
}

/// The process callback: hands JACK's buffers to the engines, nothing else.
unsafe extern "C" fn process(n_frames: jack::Frames, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the CallbackState boxed in `Host::open`; it lives until
    // `Host::close` has deactivated the client, and only JACK's process thread
    // touches `engine` (the other callbacks only read `events` and `on_shutdown`).
    let state = unsafe { &mut *(arg as *mut CallbackState) };
    // SAFETY: called by JACK inside a process cycle of this very client.
    let scope = unsafe { jack::ProcessScope::from_raw(n_frames, state.client) };
    let (frame, n) = (scope.last_frame_time(), n_frames as usize);
    if state.next_frame.is_some_and(|next| next != frame) {
        state.events.xruns.fetch_add(1, Ordering::Relaxed);
    }
    state.next_frame = Some(frame.wrapping_add(n_frames));
    // jack_get_time reads the monotonic clock through the vDSO (no system call, no
    // lock): JACK meant it for process callbacks.
    // SAFETY: no arguments; callable from any thread of a JACK client.
    let started = unsafe { jack::jack_sys::jack_get_time() };
    let engines = &mut state.engines;
    #[cfg(all(feature = "rt-alloc-check", debug_assertions))]
    assert_no_alloc::assert_no_alloc(|| run_seats(engines, frame, n, &scope));
    #[cfg(not(all(feature = "rt-alloc-check", debug_assertions)))]
    run_seats(engines, frame, n, &scope);
    // SAFETY: as above.
    let ended = unsafe { jack::jack_sys::jack_get_time() };
    state
        .events
        .busy_us
        .fetch_add(ended.saturating_sub(started), Ordering::Relaxed);
    0
}

/// One period of every seat's engine, in seat order.
fn run_seats(engines: &mut [Engine<JackPorts>], frame: u32, n: usize, scope: &jack::ProcessScope) {
    for engine in engines.iter_mut() {
        engine.process(frame, n, scope);
    }
}

unsafe extern "C" fn shutdown(
    _code: jack::jack_sys::jack_status_t,
    _reason: *const c_char,
    arg: *mut c_void,
) {
    // SAFETY: as in `process`; the server is gone, so the process callback no
    // longer runs concurrently.
    let state = unsafe { &*(arg as *const CallbackState) };
    state.events.shut_down.store(true, Ordering::SeqCst);
    (state.on_shutdown)();
}

/// An active JACK client running one engine per seat (see the module docs).
///
/// It registers only the process and shutdown callbacks, not the xrun, client, port,
/// connection and graph notifications rust-jack's `activate_async` asks for: jackd2
/// delivers each notification synchronously to every client that asked, so with 40
/// workers each asking, registering one port took 9-14 ms instead of ~1 ms (measured).
/// xruns are counted by the process callback ([`HostEvents::xruns`]): the xrun
/// notification woke every worker's notification thread for every xrun of the server.
pub struct Host {
    client: jack::Client,
    state: *mut CallbackState,
    events: Arc<HostEvents>,
    /// One per engine of the callback, in the same order.
    seats: Vec<Seat>,
    /// A standby host (see the module docs): its seats' ports carry a seat prefix
    /// and their modules' names, never come from spares, and the client keeps
    /// [`HOST_LABEL`].
    hosting: bool,
    /// Generic ports registered ahead of an assignment (pooled workers).
    spare_ports: Option<JackPorts>,
    /// Ports the last assignment did not need, unregistered by `tidy` after the reply.
    unused_ports: Option<JackPorts>,
    /// Set by `keep_spare_ports`: freeing returns the ports to generic names.
    keep_spares: bool,
    /// The client's pretty-name as last set (`None`: removed).
    client_label: Option<String>,
}

/// One module's part of a [`Host`]: its engine's controller and its ports.
struct Seat {
    controller: Controller<JackPorts>,
    /// Saves the playing LV2 plugin's own state (`None`: no module, a built-in
    /// one, or a plugin without the state extension). Set once the module is
    /// installed, cleared before [`Host::free`] takes it back and drops it: the
    /// saver holds a raw handle on the plugin instance, which the module owns.
    state_saver: Option<modsynth_lv2::state::StateSaver>,
    /// Handles to the playing module's ports with their catalog names, kept so a
    /// standby that takes over can name them.
    assigned: Vec<(jack::Port<jack::Unowned>, &'static str)>,
    /// In a standby host, what the ports' pretty-names say before their own
    /// (`osc1 (standby)` in `osc1 (standby):out`); `None`: their own name alone,
    /// as a worker's, whose client carries the module's name.
    label_prefix: Option<String>,
}

impl Seat {
    fn new(controller: Controller<JackPorts>) -> Seat {
        Seat {
            controller,
            state_saver: None,
            assigned: Vec::new(),
            label_prefix: None,
        }
    }

    /// The pretty-name of its port `short` (`out`).
    fn port_label(&self, short: &str) -> String {
        match &self.label_prefix {
            Some(prefix) => format!("{prefix}:{short}"),
            None => short.to_string(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.deactivate();
    }
}

// SAFETY: `state` is only dereferenced by JACK's threads (through `arg`) and freed in
// `close` after deactivation; Host itself never touches it otherwise, so moving the
// Host to another thread is sound.
unsafe impl Send for Host {}

/// What went wrong opening JACK client `name`, from libjack's status flags and
/// whether `server_runs(server)` says a server of that name runs: a message that
/// asks whether a server runs when one does sends the user the wrong way.
pub fn open_failure(name: &str, error: &jack::Error, server_runs: impl Fn(&str) -> bool) -> String {
    let server = std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".into());
    let status = match error {
        jack::Error::ClientError(status) => *status,
        other => return format!("cannot open JACK client '{name}' on server '{server}': {other}"),
    };
    let what = [
        (
            jack::ClientStatus::NAME_NOT_UNIQUE,
            "a client of that name is already open",
        ),
        (
            jack::ClientStatus::SERVER_FAILED,
            "no connection to the server",
        ),
        (
            jack::ClientStatus::SERVER_ERROR,
            "a communication error with the server",
        ),
        (
            jack::ClientStatus::INIT_FAILURE,
            "the client could not be initialised",
        ),
        (
            jack::ClientStatus::SHM_FAILURE,
            "no access to JACK's shared memory",
        ),
        (
            jack::ClientStatus::VERSION_ERROR,
            "libjack and the server speak different protocol versions",
        ),
        (
            jack::ClientStatus::INVALID_OPTION,
            "an option the server does not support",
        ),
    ]
    .iter()
    .filter(|(flag, _)| status.contains(*flag))
    .map(|(_, text)| *text)
    .collect::<Vec<_>>();
    let what = if what.is_empty() {
        format!("JACK status {:#x}", status.bits())
    } else {
        what.join(", ")
    };
    let head = format!("cannot open JACK client '{name}' on server '{server}': {what}");
    if status.contains(jack::ClientStatus::NAME_NOT_UNIQUE) {
        format!("{head}; `jack_lsp` lists the clients")
    } else if server_runs(&server) {
        format!(
            "{head}, although the server runs: it refused this client. jackd2 does \
             so when a client of that name is already open, at its client limit, and \
             for opens it cannot serve in time (`jack_lsp` lists its clients, its log \
             says why)"
        )
    } else if status.contains(jack::ClientStatus::SERVER_FAILED) {
        format!(
            "{head}. Is a JACK server running? Start one with `jackd -d dummy` \
             (or `scripts/live`), or set JACK_DEFAULT_SERVER to its name."
        )
    } else {
        head
    }
}

/// Whether a jackd2 server named `server` runs for this user: its request socket
/// (`/dev/shm/jack_<server>_<uid>_0`) takes a connection (a stale socket file of a
/// killed server does not). PipeWire's JACK has no such socket, so there this says
/// no, and messages fall back to libjack's status alone.
pub fn jackd_runs(server: &str) -> bool {
    let uid = rustix::process::getuid().as_raw();
    std::os::unix::net::UnixStream::connect(format!("/dev/shm/jack_{server}_{uid}_0")).is_ok()
}

/// Why the worker could not reach JACK.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

impl Host {
    /// Opens a JACK client with exactly `name` (never starting a server) and activates
    /// it with one seat, whose engine plays nothing yet: an ordinary worker.
    /// `on_shutdown` runs on JACK's notification thread if the server goes away.
    pub fn open(name: &str, on_shutdown: Box<dyn Fn() + Send + Sync>) -> Result<Host, OpenError> {
        Host::open_with(name, 1, false, on_shutdown)
    }

    /// Opens a standby host: as [`Host::open`], with `seats` seats (at least one).
    pub fn open_seats(
        name: &str,
        seats: usize,
        on_shutdown: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Host, OpenError> {
        let mut host = Host::open_with(name, seats.max(1), true, on_shutdown)?;
        // A reused id may carry a dead client's name (PipeWire): this replaces it.
        host.label_client(Some(HOST_LABEL));
        host.tidy();
        Ok(host)
    }

    fn open_with(
        name: &str,
        seats: usize,
        hosting: bool,
        on_shutdown: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Host, OpenError> {
        let options = jack::ClientOptions::NO_START_SERVER | jack::ClientOptions::USE_EXACT_NAME;
        let (client, _status) = jack::Client::new(name, options)
            .map_err(|e| OpenError(open_failure(name, &e, jackd_runs)))?;
        let (seats, engines): (Vec<Seat>, Vec<Engine<JackPorts>>) = (0..seats)
            .map(|_| {
                let (controller, engine) = engine::new(256);
                (Seat::new(controller), engine)
            })
            .unzip();
        let events = Arc::new(HostEvents::default());
        let state = Box::into_raw(Box::new(CallbackState {
            engines: engines.into_boxed_slice(),
            next_frame: None,
            client: client.raw(),
            events: events.clone(),
            on_shutdown,
        }));
        let arg = state as *mut c_void;
        // SAFETY: `client.raw()` is an open client that is not active yet; `arg`
        // points to a CallbackState that outlives the activation (freed in `close`
        // after jack_deactivate, or just below if activation fails).
        let activated = unsafe {
            let raw = client.raw();
            jack::jack_sys::jack_set_process_callback(raw, Some(process), arg) == 0 && {
                jack::jack_sys::jack_on_info_shutdown(raw, Some(shutdown), arg);
                jack::jack_sys::jack_activate(raw) == 0
            }
        };
        if !activated {
            // SAFETY: never activated, so no JACK thread holds `arg`.
            drop(unsafe { Box::from_raw(state) });
            return Err(OpenError(format!("cannot activate JACK client '{name}'")));
        }
        let released = crate::quick_exit::release_jack_pages();
        tracing::debug!("released {} MiB of libjack's page tables", released >> 20);
        Ok(Host {
            client,
            state,
            events,
            seats,
            hosting,
            spare_ports: None,
            unused_ports: None,
            keep_spares: false,
            client_label: None,
        })
    }

    /// How many seats (modules at once) it has: 1 for an ordinary worker.
    pub fn seats(&self) -> usize {
        self.seats.len()
    }

    /// The JACK client (to register ports, read the sample rate, connect).
    pub fn client(&self) -> &jack::Client {
        &self.client
    }

    /// Builds `spec` with `params` (index, validated value), registers its ports and
    /// hands both to seat `seat`'s engine. With `name`, the module is also known by
    /// that name in JACK: each port gets the alias `<name>:<port>` and the client and
    /// ports get it as their metadata pretty-name. An LV2 plugin's own state
    /// (`plugin_state`, as `set save` wrote it) is restored before it plays.
    /// Returns the full port names.
    ///
    /// # Panics
    ///
    /// If `seat` is not below [`Host::seats`] (the caller checks what a peer sends).
    pub fn assign(
        &mut self,
        seat: usize,
        spec: &'static ModuleSpec,
        params: &[(usize, f32)],
        name: Option<&str>,
        state: StatePlan,
        plugin_state: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let t0 = Instant::now();
        // An LV2 plugin is instantiated here, on the control thread, before any
        // port is touched: a plugin that cannot be loaded leaves a clean spare.
        let max_block = self.client().buffer_size() as usize;
        let mut module = Module::create(spec, self.client().sample_rate() as f32, max_block)?;
        // The values it is created with are where it starts, not changes to glide.
        for &(index, value) in params {
            module.init_param(index, value);
        }
        // Before anything runs the plugin (a standby's catch-up below, the audio
        // thread): restore is in the state spec's instantiation class.
        if let Some(text) = plugin_state {
            module
                .restore_plugin_state(text)
                .map_err(|e| format!("cannot restore the plugin state of {}: {e}", spec.name))?;
        }
        // The state first: if it cannot be had, no port has been touched and this
        // worker is still a clean spare.
        let shared = match state {
            StatePlan::None => None,
            StatePlan::Create(segment) => {
                let owner = std::process::id() as u64;
                let create =
                    || SharedState::create(segment, module.state(), module.buffer(), owner);
                // A segment left by a module of the same name that died with its
                // supervisor is stale: the supervisor never runs two modules of one id.
                Some(create().or_else(|_| {
                    let _ = SharedState::unlink(segment);
                    create()
                })?)
            }
            StatePlan::Open(segment) => {
                Some(SharedState::open(segment, module.state().type_index)?)
            }
        };
        if let (Some(shared), true) = (shared.as_ref(), module.is_lockstep()) {
            self.catch_up(&mut module, shared);
        }
        let prefix = if self.hosting {
            seat_prefix(seat)
        } else {
            String::new()
        };
        let ports = match self.spare_ports.take() {
            Some(spare) => self.take_spare(spare, spec),
            None => JackPorts::register(self.client(), spec, &prefix),
        }
        .map_err(|e| format!("cannot register the ports of {}: {e}", spec.name))?;
        let t1 = Instant::now();
        // In catalog order: the supervisor finds `spec.ports[i]` at index i.
        let full_names = ports.names_in_catalog_order(spec);
        let port_names = spec.ports.iter().map(|p| p.name);
        let handles = ports.handles_in_catalog_order(spec);
        self.seats[seat].assigned = handles.into_iter().zip(port_names).collect();
        // A standby or a replacement keeps `spare` until it is named (at once for a
        // standby, at TakeNames for a replacement): a removal followed at once by a
        // new name lost the new name on PipeWire.
        if let Some(name) = name {
            self.name_ports(seat, name);
        }
        let t2 = Instant::now();
        // SAFETY: the saver is kept in the seat's `state_saver` only while the
        // module is installed: `free` clears it before it takes the module back
        // and drops it, and it is used on this (the control) thread only, so never
        // while the module is dropped; its state was restored above, before.
        let saver = unsafe { module.plugin_state_saver() };
        let seat = &mut self.seats[seat];
        seat.controller
            .install_shared(module, ports, shared)
            .map_err(|e| e.to_string())?;
        seat.state_saver = saver;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            register_ms = ms(t1 - t0),
            naming_ms = ms(t2 - t1),
            "assigned {}",
            spec.name
        );
        Ok(full_names)
    }

    /// The playing LV2 plugin's own state as Turtle text (`Ok(None)`: no module,
    /// a built-in one, or a plugin without the state extension). Runs the
    /// plugin's `save` here, on the control thread, while the audio thread plays
    /// on: the state spec allows `save` concurrently with `run`.
    pub fn save_plugin_state(&self, seat: usize) -> Result<Option<String>, String> {
        let saver = self.seats[seat].state_saver.as_ref();
        saver.map(|s| s.save()).transpose()
    }

    /// Runs a plugin module that joins a playing one (a standby, a replacement)
    /// for as many frames as the playing one has, on silence, here on the control
    /// thread: the bulk of what its audio thread would otherwise catch up period by
    /// period (see `Module::catch_up`). At most `CATCH_UP_MAX_SECONDS`.
    fn catch_up(&self, module: &mut Module, shared: &SharedState) {
        let (published_end, slot) = shared.published();
        let Some(crate::dsp::Kernel::Lv2(clock)) = shared
            .load(slot, module.state().type_index)
            .map(|s| s.kernel)
        else {
            return;
        };
        // What it has published, no more: the audio thread catches up the rest
        // exactly, period by period, and can never undo running too far.
        let _ = published_end;
        let behind = clock.frames;
        let cap = (crate::dsp::CATCH_UP_MAX_SECONDS * self.client().sample_rate() as f32) as u64;
        let t0 = Instant::now();
        let ran = module.catch_up(behind.min(cap), true);
        tracing::debug!(
            frames = ran,
            behind,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "caught up with the playing plugin"
        );
    }

    /// Keeps generic ports registered while idle, so that an assignment takes ports
    /// instead of registering them. On jackd2 every port registration makes the
    /// server run a latency pass with two synchronous round trips to every client
    /// (`fCallback[kLatencyCallback]` is always on), so registering one port took
    /// 9-14 ms with 40 clients.
    pub fn keep_spare_ports(&mut self) -> Result<(), String> {
        let ports = JackPorts::register_generic(self.client())
            .map_err(|e| format!("cannot register spare ports: {e}"))?;
        self.spare_ports = Some(ports);
        self.keep_spares = true;
        // A reused id may carry a dead client's name (PipeWire): `spare` replaces it.
        self.label_client(Some(SPARE_LABEL));
        self.tidy(); // on PipeWire: wait until the names read back right
        Ok(())
    }

    /// Sets (or with `None` removes) the client's pretty-name.
    fn label_client(&mut self, label: Option<&str>) {
        self.client_label = label.map(str::to_string);
        let client = &self.client;
        let result = match label {
            Some(label) => set_name(client, client.uuid(), label),
            None => {
                remove_name(client, client.uuid());
                Ok(())
            }
        };
        if let (Err(e), Some(label)) = (result, label) {
            tracing::warn!(
                "cannot set the pretty-name {label} of client {}: {e}",
                client.name()
            );
        }
    }

    /// Labels the client as module `id`'s hot standby (`osc1 (standby)`) and its
    /// ports by their own names; no aliases (the module's names are the primary's).
    /// In a standby host the client keeps its label and the seat's ports say it
    /// (`osc1 (standby):out`).
    pub fn label_standby(&mut self, seat: usize, id: &str) {
        if self.hosting {
            self.seats[seat].label_prefix = Some(standby_label(id));
        } else {
            self.label_client(Some(&standby_label(id)));
        }
        let seat = &self.seats[seat];
        for (port, short) in &seat.assigned {
            label_port(&self.client, port, &seat.port_label(short));
        }
    }

    /// Makes the module played on seat `seat` a standby again (it now plays
    /// elsewhere): its aliases go, and its names say it stands by for `id`.
    pub fn stand_by(&mut self, seat: usize, id: &str) {
        self.drop_aliases(seat);
        self.label_standby(seat, id);
    }

    /// The spare ports this module needs, first inputs and outputs in catalog order;
    /// the rest are unregistered after the assignment is answered ([`Host::tidy`]).
    ///
    /// The ports keep their generic names (`in_1`, `out_1`): users see and patch the
    /// module through the aliases (`<id>:<port>`) and pretty-names its naming gives
    /// them. Renaming them was the slowest step of a create: jackd2 notifies every
    /// client of a rename, and with 32 modules playing (~100 clients) that took 31 ms
    /// median (measured), against 0.1 ms for aliases and pretty-names. PipeWire never
    /// honoured renames anyway.
    ///
    /// A module with more outputs than a spare keeps ([`SPARE_OUTPUTS`]) or a MIDI
    /// input gets them registered here (generic names too: `out_3`, `in_midi`).
    fn take_spare(
        &mut self,
        mut spare: JackPorts,
        spec: &ModuleSpec,
    ) -> Result<JackPorts, jack::Error> {
        let n_in = spec.input_ports().count();
        let n_out = spec.output_ports().count();
        let mut unused = JackPorts::empty();
        unused.inputs = spare.inputs.split_off(n_in.min(spare.inputs.len()));
        unused.outputs = spare.outputs.split_off(n_out.min(spare.outputs.len()));
        self.unused_ports = Some(unused);
        let client = &self.client;
        // Only outputs: the inputs it does not use still hold their generic names.
        // Unlabelled until the module's naming names them, like new spare ports (a
        // reused id may carry a dead worker's name on PipeWire; see `top_up`).
        while spare.outputs.len() < n_out {
            let name = generic_name("out", spare.outputs.len());
            let port = client.register_port(&name, jack::AudioOut::default())?;
            remove_stale_name(client, port_uuid(&port));
            spare.outputs.push(port);
        }
        if spec.midi_input().is_some() {
            let port = client.register_port(MIDI_PORT, jack::MidiIn::default())?;
            remove_stale_name(client, port_uuid(&port));
            spare.midi = Some(port);
        }
        Ok(spare)
    }

    /// Whether this host keeps generic spare ports between modules.
    fn keeps_spares(&self) -> bool {
        self.keep_spares
    }

    /// Unregisters the ports the last assignment did not need. Call it after the
    /// assignment has been answered: each unregistration costs a latency pass.
    ///
    /// On PipeWire the ports' pretty-names are then set again: there, a port's name
    /// set just before its neighbours were unregistered was sometimes gone after
    /// (seen on 0.3.65: one random port of a new primary unnamed, in 3 of 3 runs).
    pub fn tidy(&mut self) {
        for seat in &mut self.seats {
            seat.controller.record_latencies();
        }
        self.unregister_unused();
        if on_pipewire() {
            let mut want = vec![(self.client.uuid(), self.client_label.clone())];
            for seat in &self.seats {
                for (port, short) in &seat.assigned {
                    want.push((port_uuid(port), Some(seat.port_label(short))));
                }
            }

            self.settle_names(&want);
        }
    }

    /// On PipeWire: makes the pretty-name of each subject what `want` says (`None`:
    /// none), reading it back and setting or removing it again, until it reads
    /// right three times in a row 10 ms apart (at most 300 ms). PipeWire 0.3.65's
    /// libjack answers reads from a copy the server updates asynchronously, and
    /// sends a removal only for a key that copy holds: a name removed right after it
    /// was set, or left on a reused id by a dead worker, stayed (seen on freed and
    /// new ports). Off the create path (after the reply, on free): it may sleep.
    fn settle_names(&self, want: &[(jack::jack_sys::jack_uuid_t, Option<String>)]) {
        if !on_pipewire() {
            return;
        }
        let client = &self.client;
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut settled_reads = 0;
        loop {
            let mut settled = true;
            for (subject, name) in want {
                let have = client
                    .property_get(*subject, PRETTY_NAME)
                    .map(|p| p.value().to_string());
                if have != *name {
                    settled = false;
                    let _ = match name {
                        Some(n) => client.property_set(
                            *subject,
                            PRETTY_NAME,
                            &jack::Property::new(n, None),
                        ),
                        None => {
                            remove_name(client, *subject);
                            Ok(())
                        }
                    };
                }
            }
            settled_reads = if settled { settled_reads + 1 } else { 0 };
            if settled_reads >= 3 || Instant::now() >= deadline {
                if settled_reads == 0 {
                    tracing::warn!("some pretty-names did not settle within 300 ms");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Unregisters the ports the last assignment did not need; whether there were.
    fn unregister_unused(&mut self) -> bool {
        let Some(JackPorts {
            inputs, outputs, ..
        }) = self.unused_ports.take()
        else {
            return false;
        };
        // Their generic names go first: a server may keep a port's metadata after
        // the port is gone (PipeWire does), and no name may outlive its subject.
        for port in inputs {
            remove_stale_name(&self.client, port_uuid(&port));
            let _ = self.client.unregister_port(port);
        }
        for port in outputs {
            remove_stale_name(&self.client, port_uuid(&port));
            let _ = self.client.unregister_port(port);
        }
        true
    }

    /// Gives the ports their aliases and pretty-names. Failures are logged, not fatal:
    /// PipeWire refuses some of this, and modsynth resolves module names itself.
    /// In a standby host the client keeps its label and the ports say the module's
    /// name (`osc1:out`).
    pub fn name_ports(&mut self, seat: usize, name: &str) {
        if self.hosting {
            self.seats[seat].label_prefix = Some(name.to_string());
        } else {
            self.label_client(Some(name));
        }
        let client = &self.client;
        let seat = &mut self.seats[seat];
        let labels: Vec<String> = seat
            .assigned
            .iter()
            .map(|(_, s)| seat.port_label(s))
            .collect();
        for ((port, port_name), label) in seat.assigned.iter_mut().zip(&labels) {
            name_port(client, port, &format!("{name}:{port_name}"), label);
        }
    }

    /// Gives the ports of a module that changed its id (a prepared set's module,
    /// after the switch) the new id's names: the old aliases go first (jackd2 keeps
    /// two per port, and the old ones would still resolve to this module).
    pub fn rename_ports(&mut self, seat: usize, name: &str) {
        self.drop_aliases(seat);
        self.name_ports(seat, name);
    }

    /// Removes the aliases of seat `seat`'s ports (there are none on PipeWire).
    fn drop_aliases(&mut self, seat: usize) {
        if on_pipewire() {
            return;
        }
        for (port, _) in self.seats[seat].assigned.iter_mut() {
            for alias in port.aliases().unwrap_or_default() {
                if let Err(e) = port.unset_alias(&alias) {
                    tracing::warn!("cannot remove alias {alias}: {e}");
                }
            }
        }
    }

    /// Stops playing the module and removes its ports' connections, aliases and
    /// metadata. Waits up to `timeout` for the real-time thread to hand the module
    /// back, which it does after a 5 ms fade-out and one whole period of silence
    /// (see [`engine::FADE_SECONDS`]), so its outputs are silent before anything
    /// is disconnected.
    ///
    /// A seat of a standby host frees only its own ports, which are unregistered
    /// (seats keep no spare ports), and leaves the client's label alone.
    pub fn free(&mut self, seat: usize, timeout: Duration) -> Result<(), String> {
        let index = seat;
        let seat = &mut self.seats[index];
        // Before the module can come back and be dropped (see `state_saver`).
        seat.state_saver = None;
        if seat.assigned.is_empty() {
            return Ok(()); // nothing is playing (an assignment that failed, say)
        }
        seat.controller.remove().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        let slots = loop {
            let slots = seat.controller.collect_retired();
            if !slots.is_empty() {
                break slots;
            }
            if Instant::now() >= deadline {
                return Err("the real-time thread did not release the module".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        seat.assigned.clear();
        seat.label_prefix = None;
        self.unregister_unused(); // no names set again: they are removed next
        let pooled = self.spare_ports.is_none() && self.keeps_spares();
        let client = &self.client;
        // PipeWire keeps metadata after its subject is gone: remove it explicitly.
        // A standby host's client keeps its label: it is not the module's.
        if !self.hosting {
            remove_name(client, client.uuid());
        }
        let mut kept = JackPorts::empty();
        for slot in slots {
            let JackPorts {
                inputs,
                outputs,
                midi,
                ..
            } = slot.ports;
            for port in inputs {
                release_port(client, port, "in", &mut kept.inputs, pooled);
            }
            for port in outputs {
                // Past what a spare keeps (midi2cv's extra outputs): unregistered.
                let keep = pooled && kept.outputs.len() < SPARE_OUTPUTS;
                release_port(client, port, "out", &mut kept.outputs, keep);
            }
            if let Some(port) = midi {
                let _ = client.disconnect(&port);
                remove_name(client, port_uuid(&port));
                let _ = client.unregister_port(port);
            }
        }
        if pooled {
            kept.top_up(client, SPARE_OUTPUTS)
                .map_err(|e| format!("cannot register spare ports again: {e}"))?;
            self.label_client(Some(SPARE_LABEL));
            // The client's name only: the kept ports were labelled once by
            // release_port, the new ones unlabelled by top_up (see there).
            self.settle_names(&[(self.client.uuid(), self.client_label.clone())]);
            self.spare_ports = Some(kept);
        }
        Ok(())
    }

    /// The channel to seat `seat`'s engine on the real-time thread.
    pub fn controller(&mut self, seat: usize) -> &mut Controller<JackPorts> {
        &mut self.seats[seat].controller
    }

    /// What the notification thread saw.
    pub fn events(&self) -> &Arc<HostEvents> {
        &self.events
    }

    /// Deactivates and closes the client.
    pub fn close(mut self) -> Result<(), String> {
        match self.deactivate() {
            0 => Ok(()),
            code => Err(format!("jack_deactivate failed ({code})")),
        }
        // Dropping `self` closes the client.
    }

    /// Stops the callbacks and frees their state (once).
    fn deactivate(&mut self) -> c_int {
        if self.state.is_null() {
            return 0;
        }
        // SAFETY: the client is open and active; once jack_deactivate returns, no
        // JACK thread runs our callbacks any more, so their state can be freed.
        let result = unsafe { jack::jack_sys::jack_deactivate(self.client.raw()) };
        drop(unsafe { Box::from_raw(self.state) });
        self.state = std::ptr::null_mut();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_failure_says_what_failed_and_asks_for_a_server_only_when_none_runs() {
        let failed = jack::Error::ClientError(
            jack::ClientStatus::FAILURE | jack::ClientStatus::SERVER_FAILED,
        );
        let none = open_failure("ms-w03", &failed, |_| false);
        assert!(none.contains("no connection to the server"), "{none}");
        assert!(none.contains("Is a JACK server running?"), "{none}");
        let refused = open_failure("ms-w03", &failed, |_| true);
        assert!(refused.contains("although the server runs"), "{refused}");
        assert!(!refused.contains("Is a JACK server running"), "{refused}");
        let taken = jack::Error::ClientError(
            jack::ClientStatus::FAILURE | jack::ClientStatus::NAME_NOT_UNIQUE,
        );
        let taken = open_failure("ms-w03", &taken, |_| true);
        assert!(
            taken.contains("a client of that name is already open"),
            "{taken}"
        );
        assert!(!taken.contains("Is a JACK server running"), "{taken}");
    }

    #[test]
    fn no_server_is_seen_where_no_socket_listens() {
        assert!(!jackd_runs("modsynth-no-such-server-for-sure"));
    }
}
