//! An OSC client for `modsynthd`: sends a request and waits for its answer.
//!
//! Used by the `modsynth` CLI, the tests and the bench.
//!
//! ```no_run
//! use modsynth_control::client::Client;
//! use modsynth_control::osc::{message, text};
//!
//! let client = Client::new("127.0.0.1:57300".parse().unwrap()).unwrap();
//! client.call(message("/module/new", vec![text("vco"), text("vco1")])).unwrap();
//! ```

use crate::osc;
use rosc::{OscMessage, OscPacket, OscType};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for an answer by default: far above any command's target, far
/// below what makes a person wonder.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// A UDP socket talking to one `modsynthd`.
pub struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    timeout: Duration,
}

impl Client {
    /// A client for the supervisor at `server`, from a fresh local port.
    pub fn new(server: SocketAddr) -> Result<Client, String> {
        // Reply from the same family and scope as the server: loopback for a local one.
        let local: SocketAddr = match (server.is_ipv4(), server.ip().is_loopback()) {
            (true, true) => "127.0.0.1:0",
            (true, false) => "0.0.0.0:0",
            (false, true) => "[::1]:0",
            (false, false) => "[::]:0",
        }
        .parse()
        .expect("literal address");
        let socket =
            UdpSocket::bind(local).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        Ok(Client {
            socket,
            server,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes how long to wait for answers.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sends a message and does not wait.
    pub fn send(&self, msg: OscMessage) -> Result<(), String> {
        self.send_packet(&OscPacket::Message(msg))
    }

    /// Sends any packet (a bundle, say) and does not wait.
    pub fn send_packet(&self, packet: &OscPacket) -> Result<(), String> {
        let bytes = rosc::encoder::encode(packet).map_err(|e| format!("cannot encode: {e:?}"))?;
        self.socket
            .send_to(&bytes, self.server)
            .map_err(|e| format!("cannot send to {}: {e}", self.server))?;
        Ok(())
    }

    /// Waits for the first message `wanted` accepts; other messages are skipped.
    pub fn wait_for(&self, wanted: impl Fn(&OscMessage) -> bool) -> Result<OscMessage, String> {
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no answer from modsynthd at {} within {:?}: is it running? (start it with scripts/live or modsynthd)",
                    self.server, self.timeout
                ));
            }
            self.socket
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                // ECONNREFUSED from an earlier send: nobody listens on that port.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(format!("nothing listens at {} (is modsynthd running? start it with scripts/live or modsynthd)", self.server))
                }
                Err(e) => return Err(e.to_string()),
            };
            if from != self.server {
                // Not modsynthd: anyone can send a datagram to this port.
                continue;
            }
            if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) {
                if wanted(&m) {
                    return Ok(m);
                }
            }
        }
    }

    /// Sends a command and waits for its `/done` (returned) or `/fail` (an error with
    /// the reason).
    pub fn call(&self, msg: OscMessage) -> Result<OscMessage, String> {
        let address = msg.addr.clone();
        self.send(msg)?;
        let reply = self.wait_for(|m| {
            (m.addr == "/done" || m.addr == "/fail") && m.args.first() == Some(&osc::text(&address))
        })?;
        if reply.addr == "/fail" {
            Err(fail_reason(&reply))
        } else {
            Ok(reply)
        }
    }

    /// Sends a message with no reply of its own (like `/module/set`), then `/sync`:
    /// returns once it is applied, or with the `/fail` it caused.
    pub fn call_then_sync(&self, msg: OscMessage) -> Result<(), String> {
        let address = msg.addr.clone();
        self.send(msg)?;
        self.sync_checking(&address)
    }

    /// `/sync`: returns once everything sent before is applied.
    pub fn sync(&self) -> Result<(), String> {
        self.sync_checking("/sync")
    }

    fn sync_checking(&self, address: &str) -> Result<(), String> {
        static NEXT: AtomicI32 = AtomicI32::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.send(osc::message("/sync", vec![OscType::Int(id)]))?;
        let reply = self.wait_for(|m| {
            (m.addr == "/synced" && m.args == vec![OscType::Int(id)])
                || (m.addr == "/fail" && m.args.first() == Some(&osc::text(address)))
        })?;
        if reply.addr == "/fail" {
            Err(fail_reason(&reply))
        } else {
            Ok(())
        }
    }

    /// Sends `msg` and waits for a message at `reply_address` (or a `/fail` for it).
    pub fn query(&self, msg: OscMessage, reply_address: &str) -> Result<OscMessage, String> {
        let address = msg.addr.clone();
        self.send(msg)?;
        let reply = self.wait_for(|m| {
            m.addr == reply_address
                || (m.addr == "/fail" && m.args.first() == Some(&osc::text(&address)))
        })?;
        if reply.addr == "/fail" {
            Err(fail_reason(&reply))
        } else {
            Ok(reply)
        }
    }
}

/// The reason of a `/fail <address> [context...] <reason>`: its last argument.
pub fn fail_reason(reply: &OscMessage) -> String {
    match reply.args.last() {
        Some(OscType::String(reason)) => reason.clone(),
        _ => format!("{reply:?}"),
    }
}
