//! A JACK client that plays timed MIDI messages into modules (a keyboard or a
//! sequencer, exactly to the frame).
//!
//! [`MidiPlayer::play`] hands a list of `(frame offset, message)` to the real-time
//! callback through an `rtrb` ring; the callback starts it at the beginning of the
//! next period, reports that period's frame time back, writes each message into the
//! period that holds its offset with the offset's frame inside it, and sends the
//! finished list back through a second ring, so it is freed off the real-time thread.
//!
//! In JACK's graph order the player runs before the modules it is connected to, so a
//! message at offset `k` reaches a module in the very period of frame `start + k`.

use crate::jack_server::{ClientLease, JackServer};
use jack::{Client, ClientStatus, Control, MidiOut, Port, ProcessScope, RawMidi};
use rtrb::{Consumer, Producer, RingBuffer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many lists can be queued or waiting to be freed at once.
const QUEUE: usize = 16;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// One timed message: frame offset from the start of its list, and the bytes.
pub type Timed = (u64, Vec<u8>);

/// A list in flight, with how far it has played.
struct Sequence {
    id: u64,
    /// Sorted by offset.
    events: Vec<Timed>,
    /// Index of the next message to write.
    next: usize,
    /// Frames of the list already played.
    elapsed: u64,
}

struct MidiProcess {
    port: Port<MidiOut>,
    incoming: Consumer<Box<Sequence>>,
    returned: Producer<Box<Sequence>>,
    starts: Producer<(u64, u32)>,
    current: Option<Box<Sequence>>,
    /// A finished list the return ring had no room for; retried every period.
    pending_return: Option<Box<Sequence>>,
    /// Messages JACK refused (its port buffer full).
    refused: Arc<AtomicU64>,
}

impl jack::ProcessHandler for MidiProcess {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        if let Some(s) = self.pending_return.take() {
            if let Err(rtrb::PushError::Full(s)) = self.returned.push(s) {
                self.pending_return = Some(s);
            }
        }
        if self.current.is_none() && self.pending_return.is_none() {
            if let Ok(s) = self.incoming.pop() {
                let _ = self.starts.push((s.id, ps.last_frame_time()));
                self.current = Some(s);
            }
        }
        let n = ps.n_frames() as u64;
        let mut writer = self.port.writer(ps);
        let mut done = false;
        if let Some(s) = &mut self.current {
            while let Some((offset, bytes)) = s.events.get(s.next) {
                if *offset >= s.elapsed + n {
                    break;
                }
                let time = offset.saturating_sub(s.elapsed) as u32;
                if writer.write(&RawMidi { time, bytes }).is_err() {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                s.next += 1;
            }
            s.elapsed += n;
            done = s.next >= s.events.len();
        }
        if done {
            if let Some(s) = self.current.take() {
                if let Err(rtrb::PushError::Full(s)) = self.returned.push(s) {
                    self.pending_return = Some(s);
                }
            }
        }
        Control::Continue
    }
}

struct Notify {
    stopped: Arc<AtomicBool>,
}

impl jack::NotificationHandler for Notify {
    unsafe fn shutdown(&mut self, _status: ClientStatus, _reason: &str) {
        self.stopped.store(true, Ordering::Release);
    }
}

struct Ctl {
    outgoing: Producer<Box<Sequence>>,
    returned: Consumer<Box<Sequence>>,
    starts: Consumer<(u64, u32)>,
    next_id: u64,
}

/// A playing client with one MIDI output `midi_out`, active until dropped.
pub struct MidiPlayer {
    client: jack::AsyncClient<Notify, MidiProcess>,
    /// Dropped after `client`: keeps the process pinned to the server meanwhile.
    _lease: ClientLease,
    name: String,
    ctl: Mutex<Ctl>,
    stopped: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl MidiPlayer {
    /// Opens and activates a client named `midi-<n>` on `server`, sending nothing.
    pub fn start(server: &JackServer) -> Result<MidiPlayer, String> {
        let name = format!("midi-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        let (client, lease) = server.open_client(&name)?.into_parts();
        let port = client
            .register_port("midi_out", MidiOut::default())
            .map_err(|e| format!("registering {name}:midi_out: {e}"))?;
        let (outgoing, incoming) = RingBuffer::new(QUEUE);
        let (ret_p, ret_c) = RingBuffer::new(QUEUE);
        let (starts_p, starts_c) = RingBuffer::new(QUEUE * 4);
        let stopped = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let process = MidiProcess {
            port,
            incoming,
            returned: ret_p,
            starts: starts_p,
            current: None,
            pending_return: None,
            refused: refused.clone(),
        };
        let client = client
            .activate_async(
                Notify {
                    stopped: stopped.clone(),
                },
                process,
            )
            .map_err(|e| format!("activating {name}: {e}"))?;
        let name = client.as_client().name().to_string();
        Ok(MidiPlayer {
            client,
            _lease: lease,
            name,
            ctl: Mutex::new(Ctl {
                outgoing,
                returned: ret_c,
                starts: starts_c,
                next_id: 0,
            }),
            stopped,
            refused,
        })
    }

    /// The full JACK name of the MIDI output.
    pub fn port(&self) -> String {
        format!("{}:midi_out", self.name)
    }

    /// The underlying JACK client.
    pub fn client(&self) -> &Client {
        self.client.as_client()
    }

    /// Messages JACK's port buffer had no room for, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Queues `events` (sorted here by offset) and blocks until the real-time side
    /// starts them at the beginning of a period; returns that period's JACK frame
    /// time: the message at offset `k` is sent on frame `start + k`.
    pub fn play(&self, mut events: Vec<Timed>) -> Result<u64, String> {
        events.sort_by_key(|(offset, _)| *offset);
        let mut ctl = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        while ctl.returned.pop().is_ok() {}
        let id = ctl.next_id;
        ctl.next_id += 1;
        let sequence = Box::new(Sequence {
            id,
            events,
            next: 0,
            elapsed: 0,
        });
        if ctl.outgoing.push(sequence).is_err() {
            return Err(format!("MIDI player '{}': queue full", self.name));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ctl.starts.pop() {
                Ok((got, frame)) if got == id => return Ok(frame as u64),
                Ok(_) => continue,
                Err(_) => {}
            }
            if self.stopped.load(Ordering::Acquire) {
                return Err(format!(
                    "MIDI player '{}': JACK server shut down",
                    self.name
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "MIDI player '{}': not started within 10 s",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
