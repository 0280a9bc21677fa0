//! A JACK client that plays given buffers (gates, impulses, test tones) into modules.
//!
//! It outputs silence until [`Player::play`] hands it buffers. The buffers are built
//! and boxed on the caller's thread and sent through an `rtrb` ring; the real-time
//! callback starts a buffer at the beginning of the next period, reports that
//! period's frame time back, and when the buffer is finished sends the box back
//! through a second ring, so it is freed off the real-time thread. The callback never
//! allocates, frees, locks or blocks.
//!
//! To measure exact sample delays through a module, capture both the player's output
//! and the module's output in the same [`Capture`](crate::capture::Capture): in
//! JACK's graph order player -> module -> capture adds no period of latency.
//!
//! Port numbers are 0-based: port `k` is named `out_{k+1}` and plays `channels[k]`.

use crate::jack_server::{ClientLease, JackServer};
use jack::{AudioOut, Client, ClientStatus, Control, Port, ProcessScope};
use rtrb::{Consumer, Producer, RingBuffer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long [`Player::play`] waits for the real-time side to start a buffer.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many buffers can be queued or waiting to be freed at once.
const QUEUE: usize = 16;

static PLAYER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One buffer set in flight, with its read position.
struct PlayBuf {
    id: u64,
    channels: Vec<Vec<f32>>,
    len: usize,
    pos: usize,
}

/// What the real-time callback owns.
struct PlayProcess {
    ports: Vec<Port<AudioOut>>,
    incoming: Consumer<Box<PlayBuf>>,
    returned: Producer<Box<PlayBuf>>,
    starts: Producer<(u64, u32)>,
    current: Option<Box<PlayBuf>>,
    /// A finished buffer the return ring had no room for; retried every period.
    pending_return: Option<Box<PlayBuf>>,
    finished: Arc<AtomicU64>,
}

impl jack::ProcessHandler for PlayProcess {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        if let Some(b) = self.pending_return.take() {
            if let Err(rtrb::PushError::Full(b)) = self.returned.push(b) {
                self.pending_return = Some(b);
            }
        }
        // Only start a new buffer when there is a free slot to hand it back later.
        if self.current.is_none() && self.pending_return.is_none() {
            if let Ok(b) = self.incoming.pop() {
                let _ = self.starts.push((b.id, ps.last_frame_time()));
                self.current = Some(b);
            }
        }
        let n = ps.n_frames() as usize;
        let mut done = false;
        for (k, port) in self.ports.iter_mut().enumerate() {
            let out = port.as_mut_slice(ps);
            out.fill(0.0);
            if let Some(b) = &self.current {
                if let Some(ch) = b.channels.get(k) {
                    let lo = b.pos.min(ch.len());
                    let hi = (b.pos + n).min(ch.len());
                    out[..hi - lo].copy_from_slice(&ch[lo..hi]);
                }
            }
        }
        if let Some(b) = &mut self.current {
            b.pos += n;
            done = b.pos >= b.len;
        }
        if done {
            if let Some(b) = self.current.take() {
                if let Err(rtrb::PushError::Full(b)) = self.returned.push(b) {
                    self.pending_return = Some(b);
                }
                self.finished.fetch_add(1, Ordering::Release);
            }
        }
        Control::Continue
    }
}

/// Notices the server going away, so [`Player::play`] fails fast.
struct PlayNotify {
    stopped: Arc<AtomicBool>,
}

impl jack::NotificationHandler for PlayNotify {
    unsafe fn shutdown(&mut self, _status: ClientStatus, _reason: &str) {
        self.stopped.store(true, Ordering::Release);
    }
}

/// The non-real-time ends of the rings.
struct PlayerCtl {
    outgoing: Producer<Box<PlayBuf>>,
    returned: Consumer<Box<PlayBuf>>,
    starts: Consumer<(u64, u32)>,
    next_id: u64,
}

/// A playing client with `n` output ports `out_1..out_n`, active until dropped.
pub struct Player {
    client: jack::AsyncClient<PlayNotify, PlayProcess>,
    /// Dropped after `client` (fields drop in order): keeps the process pinned to
    /// the server while the client is open.
    _lease: ClientLease,
    name: String,
    n_outputs: usize,
    ctl: Mutex<PlayerCtl>,
    finished: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

impl Player {
    /// Opens and activates a client named `player-<n>` on `server` with output ports
    /// `out_1..out_{n_outputs}`, playing silence.
    pub fn start(server: &JackServer, n_outputs: usize) -> Result<Player, String> {
        let name = format!("player-{}", PLAYER_COUNTER.fetch_add(1, Ordering::Relaxed));
        let (client, lease) = server.open_client(&name)?.into_parts();
        let mut ports = Vec::with_capacity(n_outputs);
        for k in 0..n_outputs {
            let port = client
                .register_port(&format!("out_{}", k + 1), AudioOut::default())
                .map_err(|e| format!("registering {name}:out_{}: {e}", k + 1))?;
            ports.push(port);
        }
        let (outgoing, incoming) = RingBuffer::new(QUEUE);
        let (ret_p, ret_c) = RingBuffer::new(QUEUE);
        let (starts_p, starts_c) = RingBuffer::new(QUEUE * 4);
        let finished = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let process = PlayProcess {
            ports,
            incoming,
            returned: ret_p,
            starts: starts_p,
            current: None,
            pending_return: None,
            finished: finished.clone(),
        };
        let client = client
            .activate_async(
                PlayNotify {
                    stopped: stopped.clone(),
                },
                process,
            )
            .map_err(|e| format!("activating {name}: {e}"))?;
        let name = client.as_client().name().to_string();
        Ok(Player {
            client,
            _lease: lease,
            name,
            n_outputs,
            ctl: Mutex::new(PlayerCtl {
                outgoing,
                returned: ret_c,
                starts: starts_c,
                next_id: 0,
            }),
            finished,
            stopped,
        })
    }

    /// The JACK client name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of output ports.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The full JACK name of output port `k` (0-based): `<client>:out_{k+1}`.
    pub fn port(&self, k: usize) -> String {
        format!("{}:out_{}", self.name, k + 1)
    }

    /// The underlying JACK client (for connecting, querying ports, ...).
    pub fn client(&self) -> &Client {
        self.client.as_client()
    }

    /// Connects output `k` (0-based) to the input port named `dst_port_name` (full
    /// JACK name).
    pub fn connect_to(&self, k: usize, dst_port_name: &str) -> Result<(), String> {
        if k >= self.n_outputs {
            return Err(format!(
                "player has {} outputs, no output {k}",
                self.n_outputs
            ));
        }
        let src = self.port(k);
        self.client()
            .connect_ports_by_name(&src, dst_port_name)
            .map_err(|e| format!("connecting {src} -> {dst_port_name}: {e}"))
    }

    /// Queues `channels` (`channels[k]` goes to output `k`; missing channels and the
    /// tails of shorter ones play silence) and blocks until the real-time side starts
    /// it at the beginning of a period. Returns the JACK frame time of the first
    /// sample (32-bit JACK frame counter widened, like
    /// [`Recording::start_frame`](crate::capture::Recording::start_frame)).
    ///
    /// A buffer queued while another is playing starts after it ends.
    pub fn play(&self, channels: Vec<Vec<f32>>) -> Result<u64, String> {
        let mut ctl = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        // Free the buffers the real-time side has finished with (here, not there).
        while ctl.returned.pop().is_ok() {}
        let id = ctl.next_id;
        ctl.next_id += 1;
        let len = channels.iter().map(Vec::len).max().unwrap_or(0);
        let buf = Box::new(PlayBuf {
            id,
            channels,
            len,
            pos: 0,
        });
        if ctl.outgoing.push(buf).is_err() {
            return Err(format!(
                "player '{}': queue full ({QUEUE} buffers)",
                self.name
            ));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match ctl.starts.pop() {
                Ok((got, frame)) if got == id => return Ok(frame as u64),
                Ok(_) => continue, // a start of an earlier play that timed out
                Err(_) => {}
            }
            if self.stopped.load(Ordering::Acquire) {
                return Err(format!("player '{}': JACK server shut down", self.name));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "player '{}': buffer not started within {START_TIMEOUT:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// How many buffers have finished playing since start.
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// Waits until every buffer handed to [`Player::play`] has finished playing.
    pub fn wait_idle(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let queued = self.ctl.lock().unwrap_or_else(|p| p.into_inner()).next_id;
        while self.finished() < queued {
            if self.stopped.load(Ordering::Acquire) {
                return Err(format!("player '{}': JACK server shut down", self.name));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "player '{}': still playing after {timeout:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}
