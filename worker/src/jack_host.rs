//! Runs the [`Engine`](crate::engine::Engine) inside a JACK client.
//!
//! The JACK process callback does nothing but hand JACK's buffers to the engine. In
//! builds with debug assertions and the `rt-alloc-check` feature (the default), the
//! callback runs inside `assert_no_alloc`, so an allocation on the real-time thread
//! aborts the worker instead of passing unnoticed.

use crate::dsp::{Io, Module};
use crate::engine::{self, Controller, Engine, Ports};
use modsynth_control::catalog::ModuleSpec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The JACK metadata key qjackctl and Carla show as a client's or port's name.
pub const PRETTY_NAME: &str = "http://jackaudio.org/metadata/pretty-name";

/// Gives `port` the alias and the pretty-name `alias` (`<module>:<port>`).
fn name_port<PS>(client: &jack::Client, port: &mut jack::Port<PS>, alias: &str) {
    if let Err(e) = port.set_alias(alias) {
        tracing::warn!("cannot alias a port as {alias}: {e}");
    }
    let pretty = jack::Property::new(alias, None);
    if let Err(e) = client.property_set(port_uuid(port), PRETTY_NAME, &pretty) {
        tracing::warn!("cannot set the pretty-name {alias}: {e}");
    }
}

/// The JACK uuid of a port (rust-jack has no safe call for it).
fn port_uuid<PS>(port: &jack::Port<PS>) -> jack::jack_sys::jack_uuid_t {
    // SAFETY: `port.raw()` is a valid jack_port_t for as long as `port` is registered,
    // which it is while we hold it; jack_port_uuid only reads it.
    unsafe { jack::jack_sys::jack_port_uuid(port.raw()) }
}

/// The JACK ports of one module, in catalog order.
pub struct JackPorts {
    pub inputs: Vec<jack::Port<jack::AudioIn>>,
    pub outputs: Vec<jack::Port<jack::AudioOut>>,
}

impl JackPorts {
    /// Registers `spec`'s ports on `client` under their catalog names.
    pub fn register(client: &jack::Client, spec: &ModuleSpec) -> Result<JackPorts, jack::Error> {
        let mut ports = JackPorts {
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        for p in spec.input_ports() {
            ports
                .inputs
                .push(client.register_port(p.name, jack::AudioIn::default())?);
        }
        for p in spec.output_ports() {
            ports
                .outputs
                .push(client.register_port(p.name, jack::AudioOut::default())?);
        }
        Ok(ports)
    }
}

impl Ports for JackPorts {
    type Scope = jack::ProcessScope;

    fn bind<'a>(&'a mut self, _n_frames: usize, scope: &'a jack::ProcessScope) -> Io<'a> {
        let mut io = Io::empty();
        for (slot, port) in io.inputs.iter_mut().zip(&self.inputs) {
            *slot = port.as_slice(scope);
        }
        for (slot, port) in io.outputs.iter_mut().zip(&mut self.outputs) {
            *slot = port.as_mut_slice(scope);
        }
        io
    }
}

/// What the host's notification thread observed.
#[derive(Debug, Default)]
pub struct HostEvents {
    /// xruns JACK reported for this client.
    pub xruns: AtomicU64,
    /// Set when the server shut the client down.
    pub shut_down: AtomicBool,
}

struct Callback {
    engine: Engine<JackPorts>,
}

impl jack::ProcessHandler for Callback {
    fn process(&mut self, _: &jack::Client, scope: &jack::ProcessScope) -> jack::Control {
        let (frame, n) = (scope.last_frame_time(), scope.n_frames() as usize);
        #[cfg(all(feature = "rt-alloc-check", debug_assertions))]
        assert_no_alloc::assert_no_alloc(|| self.engine.process(frame, n, scope));
        #[cfg(not(all(feature = "rt-alloc-check", debug_assertions)))]
        self.engine.process(frame, n, scope);
        jack::Control::Continue
    }
}

struct Notifications {
    events: Arc<HostEvents>,
    on_shutdown: Box<dyn Fn() + Send + Sync>,
}

impl jack::NotificationHandler for Notifications {
    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        self.events.xruns.fetch_add(1, Ordering::Relaxed);
        jack::Control::Continue
    }

    unsafe fn shutdown(&mut self, _status: jack::ClientStatus, _reason: &str) {
        self.events.shut_down.store(true, Ordering::SeqCst);
        (self.on_shutdown)();
    }
}

/// An active JACK client running one engine.
pub struct Host {
    client: jack::AsyncClient<Notifications, Callback>,
    controller: Controller<JackPorts>,
    events: Arc<HostEvents>,
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
    /// it with an engine that plays nothing yet. `on_shutdown` runs on JACK's
    /// notification thread if the server goes away.
    pub fn open(name: &str, on_shutdown: Box<dyn Fn() + Send + Sync>) -> Result<Host, OpenError> {
        let options = jack::ClientOptions::NO_START_SERVER | jack::ClientOptions::USE_EXACT_NAME;
        let (client, _status) = jack::Client::new(name, options).map_err(|e| {
            let server = std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".into());
            OpenError(format!(
                "cannot open JACK client '{name}' on server '{server}' ({e}). \
                 Is a JACK server running? Start one with `jackd -d dummy` \
                 (or `scripts/live`), or set JACK_DEFAULT_SERVER to its name."
            ))
        })?;
        let (controller, engine) = engine::new(256);
        let events = Arc::new(HostEvents::default());
        let notifications = Notifications {
            events: events.clone(),
            on_shutdown,
        };
        let client = client
            .activate_async(notifications, Callback { engine })
            .map_err(|e| OpenError(format!("cannot activate JACK client '{name}': {e}")))?;
        Ok(Host {
            client,
            controller,
            events,
        })
    }

    /// The JACK client (to register ports, read the sample rate, connect).
    pub fn client(&self) -> &jack::Client {
        self.client.as_client()
    }

    /// Builds `spec` with `params` (index, validated value), registers its ports and
    /// hands both to the real-time thread. With `name`, the module is also known by
    /// that name in JACK: each port gets the alias `<name>:<port>` and the client and
    /// ports get it as their metadata pretty-name. Returns the full port names.
    pub fn assign(
        &mut self,
        spec: &'static ModuleSpec,
        params: &[(usize, f32)],
        name: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let mut module = Module::new(spec, self.client().sample_rate() as f32);
        for &(index, value) in params {
            module.set_param(index, value);
        }
        let mut ports = JackPorts::register(self.client(), spec)
            .map_err(|e| format!("cannot register the ports of {}: {e}", spec.name))?;
        let full_names: Vec<String> = spec
            .ports
            .iter()
            .map(|p| format!("{}:{}", self.client().name(), p.name))
            .collect();
        if let Some(name) = name {
            self.name_ports(&mut ports, spec, name);
        }
        self.controller
            .install(module, ports)
            .map_err(|e| e.to_string())?;
        Ok(full_names)
    }

    /// Gives the ports their aliases and pretty-names. Failures are logged, not fatal:
    /// PipeWire refuses some of this, and modsynth resolves module names itself.
    fn name_ports(&self, ports: &mut JackPorts, spec: &ModuleSpec, name: &str) {
        let client = self.client();
        let pretty = jack::Property::new(name, None);
        if let Err(e) = client.property_set(client.uuid(), PRETTY_NAME, &pretty) {
            tracing::warn!(
                "cannot set the pretty-name of client {}: {e}",
                client.name()
            );
        }
        for (port, spec) in ports.inputs.iter_mut().zip(spec.input_ports()) {
            name_port(client, port, &format!("{name}:{}", spec.name));
        }
        for (port, spec) in ports.outputs.iter_mut().zip(spec.output_ports()) {
            name_port(client, port, &format!("{name}:{}", spec.name));
        }
    }

    /// Stops playing the module and removes its ports, aliases and metadata. Waits up
    /// to `timeout` for the real-time thread to hand the module back.
    pub fn free(&mut self, timeout: Duration) -> Result<(), String> {
        self.controller.remove().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        let slots = loop {
            let slots = self.controller.collect_retired();
            if !slots.is_empty() {
                break slots;
            }
            if Instant::now() >= deadline {
                return Err("the real-time thread did not release the module".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let client = self.client();
        // PipeWire keeps metadata after its subject is gone: remove it explicitly.
        let _ = client.property_remove(client.uuid(), PRETTY_NAME);
        for slot in slots {
            let JackPorts { inputs, outputs } = slot.ports;
            for port in inputs {
                let _ = client.property_remove(port_uuid(&port), PRETTY_NAME);
                let _ = client.unregister_port(port);
            }
            for port in outputs {
                let _ = client.property_remove(port_uuid(&port), PRETTY_NAME);
                let _ = client.unregister_port(port);
            }
        }
        Ok(())
    }

    /// The channel to the real-time thread.
    pub fn controller(&mut self) -> &mut Controller<JackPorts> {
        &mut self.controller
    }

    /// What the notification thread saw.
    pub fn events(&self) -> &Arc<HostEvents> {
        &self.events
    }

    /// Deactivates and closes the client.
    pub fn close(self) -> Result<(), String> {
        self.client
            .deactivate()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
