//! A `/notify` subscriber: receives the supervisor's events (`/module/died`,
//! `/module/failover id silent_frames`, `/pool/spare n`, ...) and notes when each
//! arrived, which is what the detection and failover timings are measured against.

use modsynth_control::client::Client;
use modsynth_control::osc::{message, text};
use modsynth_tests::supervisor::Supervisor;
use rosc::{OscMessage, OscType};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Subscribed to one supervisor's events until dropped (its socket closes).
pub struct Events {
    client: Client,
    /// `/pool/spare` events seen so far: one per worker spawned.
    spares: Cell<usize>,
}

impl Events {
    /// Subscribes with `/notify 1`.
    pub fn subscribe(sup: &Supervisor) -> Result<Events, String> {
        let client = sup.client().with_timeout(Duration::from_secs(30));
        client.call(message("/notify", vec![OscType::Int(1)]))?;
        Ok(Events {
            client,
            spares: Cell::new(0),
        })
    }

    /// Waits for event `address` about module `id` (its first argument) and returns
    /// it with the time it was received. Earlier events of other kinds or modules
    /// are passed over (`/pool/spare` ones are counted).
    pub fn next(&self, address: &str, id: &str) -> Result<(OscMessage, Instant), String> {
        let m = self
            .wait(|m| m.addr == address && m.args.first() == Some(&text(id)))
            .map_err(|e| format!("waiting for {address} {id}: {e}"))?;
        Ok((m, Instant::now()))
    }

    /// Reads every event sent before now (a `/sync` round trip), so that
    /// [`Events::spares_seen`] is up to date.
    pub fn drain(&self) -> Result<(), String> {
        let id = 0x5eed;
        self.client.send(message("/sync", vec![OscType::Int(id)]))?;
        self.wait(|m| m.addr == "/synced" && m.args == vec![OscType::Int(id)])
            .map(|_| ())
    }

    /// Workers spawned since the subscription (`/pool/spare` events read so far).
    pub fn spares_seen(&self) -> usize {
        self.spares.get()
    }

    fn wait(&self, wanted: impl Fn(&OscMessage) -> bool) -> Result<OscMessage, String> {
        self.client.wait_for(|m| {
            if m.addr == "/pool/spare" {
                self.spares.set(self.spares.get() + 1);
            }
            wanted(m)
        })
    }
}

/// The integer argument `k` of an event, if it is one.
pub fn int_arg(m: &OscMessage, k: usize) -> Option<i32> {
    match m.args.get(k) {
        Some(OscType::Int(v)) => Some(*v),
        _ => None,
    }
}
