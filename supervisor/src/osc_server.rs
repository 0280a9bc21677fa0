//! The OSC thread: receives datagrams, decodes them, stamps them with JACK time and
//! hands them to the core as events. It decides nothing.

use crate::core::Event;
use modsynth_control::osc::{self, Fail};
use rosc::{OscPacket, OscTime};
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where JACK time comes from (the supervisor's own client; a fake in tests).
pub trait Clock: Send + Sync + 'static {
    /// Estimated current JACK frame.
    fn frame_now(&self) -> u32;
    /// The JACK frame at which `when` (wall clock) happens, if it is in the future.
    fn frame_at(&self, when: SystemTime) -> Option<u32>;
}

impl Clock for jack::Client {
    fn frame_now(&self) -> u32 {
        self.frame_time()
    }

    fn frame_at(&self, when: SystemTime) -> Option<u32> {
        let ahead = when.duration_since(SystemTime::now()).ok()?;
        // JACK's own clock (microseconds) maps to frames through the server's DLL.
        let usecs = self.time().saturating_add(ahead.as_micros() as u64);
        Some(self.time_to_frames(usecs))
    }
}

/// Runs the OSC receive loop on a new thread.
pub fn spawn(socket: UdpSocket, clock: Arc<dyn Clock>, events: Sender<Event>) {
    std::thread::Builder::new()
        .name("osc".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let (len, from) = match socket.recv_from(&mut buf) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!("osc receive: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let received = clock.frame_now();
                let alive = match rosc::decoder::decode_udp(&buf[..len]) {
                    Ok((_, packet)) => deliver(packet, None, from, received, &*clock, &events),
                    Err(e) => events
                        .send(Event::Osc {
                            from,
                            request: Err(Fail::new("/", format!("malformed OSC packet: {e:?}"))),
                            received,
                            at: None,
                        })
                        .is_ok(),
                };
                if !alive {
                    return;
                }
            }
        })
        .expect("spawning the OSC thread");
}

/// Sends every message of `packet` as an event; bundles pass their timetag down.
fn deliver(
    packet: OscPacket,
    at: Option<u32>,
    from: SocketAddr,
    received: u32,
    clock: &dyn Clock,
    events: &Sender<Event>,
) -> bool {
    match packet {
        OscPacket::Message(msg) => {
            let request = osc::decode(&msg);
            events
                .send(Event::Osc {
                    from,
                    request,
                    received,
                    at,
                })
                .is_ok()
        }
        OscPacket::Bundle(bundle) => {
            let at = frame_of(bundle.timetag, clock).or(at);
            bundle
                .content
                .into_iter()
                .all(|p| deliver(p, at, from, received, clock, events))
        }
    }
}

/// The JACK frame a timetag names; `None` for "immediately" (1) or a past time.
fn frame_of(tag: OscTime, clock: &dyn Clock) -> Option<u32> {
    if tag.seconds == 0 && tag.fractional <= 1 {
        return None;
    }
    clock.frame_at(SystemTime::from(tag))
}
