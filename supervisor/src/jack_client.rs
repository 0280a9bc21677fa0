//! The supervisor's own JACK client: watches the graph, and reads control MIDI.
//!
//! Its notification callbacks only forward what happened to the core as events;
//! libjack is never called from inside them (that deadlocks jackd2). The core then
//! connects, disconnects and looks ports up through this client from its own thread.
//! Its process callback only notes the frame each cycle starts at: the reference
//! the heartbeat check holds every module's published frame against, and copies the
//! control and program changes arriving at its one port, `midi_in`, into a ring the
//! core drains (see [`crate::core::midi`]).

use crate::core::midi::{MidiIn, MIDI_IN_PORT};
use crate::core::Event;
use crate::event_loop::EventSender;
use crate::osc_server::Clock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Forwards graph changes to the core.
pub struct GraphWatcher {
    // A Mutex only to make the handler Sync (rust-jack requires it); the callbacks
    // run on JACK's one notification thread, so it is never contended.
    events: Mutex<EventSender>,
}

impl GraphWatcher {
    fn send(&self, event: Event) {
        if let Ok(tx) = self.events.lock() {
            let _ = tx.send(event);
        }
    }
}

impl jack::NotificationHandler for GraphWatcher {
    fn ports_connected(
        &mut self,
        _: &jack::Client,
        a: jack::PortId,
        b: jack::PortId,
        connected: bool,
    ) {
        self.send(Event::PortsConnected { a, b, connected });
    }

    fn port_registration(&mut self, _: &jack::Client, _port: jack::PortId, registered: bool) {
        if registered {
            self.send(Event::PortsAppeared);
        }
    }
}

/// `frame`, or `floor` if `frame` is a little before it (at most 4096 frames, on
/// JACK's wrapping 32-bit clock). Only the estimate's jitter is corrected: a floor
/// far ahead is not a floor (the clock before the first cycle was noted, say).
///
/// ```
/// use modsynth_supervisor::jack_client::no_earlier_than;
///
/// assert_eq!(no_earlier_than(1000, 990), 1000);
/// assert_eq!(no_earlier_than(985, 990), 990);
/// assert_eq!(no_earlier_than(u32::MAX - 2, 3), 3); // 6 frames before, across the wrap
/// assert_eq!(no_earlier_than(3_000_000_000, 0), 3_000_000_000); // no cycle noted yet
/// ```
pub fn no_earlier_than(frame: u32, floor: u32) -> u32 {
    const MAX_JITTER: u32 = 4096;
    if (1..=MAX_JITTER).contains(&floor.wrapping_sub(frame)) {
        floor
    } else {
        frame
    }
}

/// Control MIDI messages the ring between the process callback and the core holds:
/// at the quarter-period drain of a 1024-frame period, a controller would have to
/// send 48,000 messages a second to fill it.
pub const MIDI_RING: usize = 1024;

/// Notes the first frame of every cycle the server runs, and copies control MIDI
/// into the core's ring.
pub struct CycleClock {
    frame: Arc<AtomicU32>,
    midi_in: jack::Port<jack::MidiIn>,
    midi: rtrb::Producer<MidiIn>,
    /// Messages the ring had no room for (the core not draining it).
    midi_dropped: Arc<AtomicU64>,
}

impl jack::ProcessHandler for CycleClock {
    fn process(&mut self, _: &jack::Client, scope: &jack::ProcessScope) -> jack::Control {
        let start = scope.last_frame_time();
        self.frame.store(start, Ordering::Relaxed);
        // Real-time: only copies of three bytes into a pre-allocated ring.
        for event in self.midi_in.iter(scope) {
            let (Some(&status), Some(&data1)) = (event.bytes.first(), event.bytes.get(1)) else {
                continue;
            };
            if !MidiIn::wanted(status) {
                continue;
            }
            let msg = MidiIn {
                frame: start.wrapping_add(event.time),
                status,
                data1,
                data2: event.bytes.get(2).copied().unwrap_or(0),
            };
            if self.midi.push(msg).is_err() {
                self.midi_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        jack::Control::Continue
    }
}

/// The supervisor's active JACK client.
pub struct Jack {
    client: jack::AsyncClient<GraphWatcher, CycleClock>,
    cycle: Arc<AtomicU32>,
    /// The core's end of the MIDI ring, until the core's effects take it.
    midi: Mutex<Option<rtrb::Consumer<MidiIn>>>,
    midi_dropped: Arc<AtomicU64>,
}

impl Jack {
    /// Opens client `name` (exactly; never starting a server) and activates it.
    pub fn open(name: &str, events: EventSender) -> Result<Jack, String> {
        let options = jack::ClientOptions::NO_START_SERVER | jack::ClientOptions::USE_EXACT_NAME;
        let (client, _) = jack::Client::new(name, options).map_err(|e| {
            let server = std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".into());
            format!(
                "cannot open JACK client '{name}' on server '{server}' ({e}). Start a JACK server \
                 first (`jackd -d dummy &`, or use scripts/live), or if instance '{name}' is \
                 already running, pick another --name."
            )
        })?;
        let watcher = GraphWatcher {
            events: Mutex::new(events),
        };
        let cycle = Arc::new(AtomicU32::new(0));
        let midi_in = client
            .register_port(MIDI_IN_PORT, jack::MidiIn::default())
            .map_err(|e| format!("cannot register JACK port '{name}:{MIDI_IN_PORT}': {e}"))?;
        let (producer, consumer) = rtrb::RingBuffer::new(MIDI_RING);
        let midi_dropped = Arc::new(AtomicU64::new(0));
        let clock = CycleClock {
            frame: cycle.clone(),
            midi_in,
            midi: producer,
            midi_dropped: midi_dropped.clone(),
        };
        let client = client
            .activate_async(watcher, clock)
            .map_err(|e| format!("cannot activate JACK client '{name}': {e}"))?;
        Ok(Jack {
            client,
            cycle,
            midi: Mutex::new(Some(consumer)),
            midi_dropped,
        })
    }

    /// The reading end of the `midi_in` ring (once; `None` after).
    pub fn take_midi(&self) -> Option<rtrb::Consumer<MidiIn>> {
        self.midi.lock().ok()?.take()
    }

    /// Control MIDI messages dropped because the ring was full.
    pub fn midi_dropped(&self) -> u64 {
        self.midi_dropped.load(Ordering::Relaxed)
    }

    /// The first frame of the last cycle the server ran, and the period in frames.
    /// Unlike the frame clock, it stands still when the server does.
    pub fn last_cycle(&self) -> (u32, u32) {
        (
            self.cycle.load(Ordering::Relaxed),
            self.client().buffer_size(),
        )
    }

    /// The full name of the port with JACK id `id`.
    pub fn port_name(&self, id: jack::PortId) -> Option<String> {
        self.client().port_by_id(id)?.name().ok()
    }

    /// The client, for connecting and looking ports up.
    pub fn client(&self) -> &jack::Client {
        self.client.as_client()
    }
}

impl Clock for Jack {
    /// JACK's estimate of the current frame, but never before the start of a cycle
    /// that has already begun. The estimate extrapolates from the cycle's *predicted*
    /// wake-up; when a cycle starts earlier than predicted, a message received just
    /// after it began was stamped up to ~10 samples before it (seen on the dummy
    /// backend), and a change applied at the very next period counted as more than a
    /// period late.
    fn frame_now(&self) -> u32 {
        no_earlier_than(self.client().frame_now(), self.last_cycle().0)
    }

    fn usecs_now(&self) -> u64 {
        self.client().usecs_now()
    }

    fn frame_at_usecs(&self, usecs: u64) -> u32 {
        self.client().frame_at_usecs(usecs)
    }
}
