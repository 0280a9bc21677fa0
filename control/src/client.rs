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

use crate::{osc, slip};
use rosc::{OscMessage, OscPacket, OscType};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long to wait for an answer by default: far above any command's target, far
/// below what makes a person wonder.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// A UDP socket (or a TCP connection, from [`Client::connect`]) talking to one
/// `modsynthd`.
pub struct Client {
    socket: UdpSocket,
    /// OSC over TCP (SLIP frames), when the server offers it and it was asked for.
    tcp: Option<Mutex<Tcp>>,
    server: SocketAddr,
    timeout: Duration,
}

struct Tcp {
    stream: TcpStream,
    decoder: slip::Decoder,
    frames: VecDeque<Vec<u8>>,
}

/// The largest reply taken over TCP (a `/status.reply` of 256 modules is ~150 KB).
const MAX_TCP_REPLY: usize = 16 << 20;

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
        // Connected: the kernel drops datagrams from anyone else, and a port nobody
        // listens on is reported at once (ECONNREFUSED) instead of after the timeout.
        socket
            .connect(server)
            .map_err(|e| format!("cannot reach {server}: {e}"))?;
        Ok(Client {
            socket,
            tcp: None,
            server,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// A client for `server` over TCP when it listens there too (modsynthd does,
    /// on its UDP port), else over UDP: TCP loses nothing under load and takes
    /// replies of any size.
    pub fn connect(server: SocketAddr) -> Result<Client, String> {
        let mut client = Client::new(server)?;
        if let Ok(stream) = TcpStream::connect_timeout(&server, Duration::from_millis(500)) {
            let _ = stream.set_nodelay(true);
            client.tcp = Some(Mutex::new(Tcp {
                stream,
                decoder: slip::Decoder::new(MAX_TCP_REPLY),
                frames: VecDeque::new(),
            }));
        }
        Ok(client)
    }

    /// Whether it talks TCP.
    pub fn is_tcp(&self) -> bool {
        self.tcp.is_some()
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
        if let Some(tcp) = &self.tcp {
            let mut tcp = tcp.lock().unwrap_or_else(|e| e.into_inner());
            return tcp
                .stream
                .write_all(&slip::encode(&bytes))
                .map_err(|e| format!("cannot send to {} over TCP: {e}", self.server));
        }
        self.socket.send(&bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => nothing_listens(self.server),
            _ => format!("cannot send to {}: {e}", self.server),
        })?;
        Ok(())
    }

    /// Waits for the first message `wanted` accepts; other messages are skipped.
    pub fn wait_for(&self, wanted: impl Fn(&OscMessage) -> bool) -> Result<OscMessage, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let how = if self.is_tcp() { " (TCP)" } else { "" };
                return Err(format!(
                    "no answer from modsynthd at {}{how} within {:?}: is it running? (start it with scripts/live or modsynthd)",
                    self.server, self.timeout
                ));
            }
            let Some(packet) = self.receive(left)? else {
                continue;
            };
            if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&packet) {
                if wanted(&m) {
                    return Ok(m);
                }
            }
        }
    }

    /// The next packet from modsynthd, or `None` when `within` passed first.
    fn receive(&self, within: Duration) -> Result<Option<Vec<u8>>, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        if let Some(tcp) = &self.tcp {
            let mut tcp = tcp.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(frame) = tcp.frames.pop_front() {
                return Ok(Some(frame));
            }
            tcp.stream
                .set_read_timeout(Some(within))
                .map_err(|e| e.to_string())?;
            let n = match tcp.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(format!(
                        "modsynthd at {} closed the connection",
                        self.server
                    ))
                }
                Ok(n) => n,
                Err(e) if timed_out(&e) => return Ok(None),
                Err(e) => return Err(format!("reading from {}: {e}", self.server)),
            };
            let Tcp {
                decoder, frames, ..
            } = &mut *tcp;
            decoder.push(&buf[..n], |f| {
                if let Ok(f) = f {
                    frames.push_back(f.to_vec());
                }
            });
            return Ok(frames.pop_front());
        }
        self.socket
            .set_read_timeout(Some(within))
            .map_err(|e| e.to_string())?;
        match self.socket.recv(&mut buf) {
            Ok(len) => {
                buf.truncate(len);
                Ok(Some(buf))
            }
            Err(e) if timed_out(&e) => Ok(None),
            // ECONNREFUSED from an earlier send: nobody listens on that port.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(nothing_listens(self.server))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends a command and waits for its `/done` (returned) or `/fail` (an error with
    /// the reason).
    pub fn call(&self, msg: OscMessage) -> Result<OscMessage, String> {
        let address = msg.addr.clone();
        self.send(msg)?;
        self.wait_done(&address)
    }

    /// Like [`Client::call`], with the message in a bundle timetagged `at`: modsynthd
    /// applies it on the JACK frame of that time.
    pub fn call_at(
        &self,
        msg: OscMessage,
        at: std::time::SystemTime,
    ) -> Result<OscMessage, String> {
        let address = msg.addr.clone();
        let timetag = rosc::OscTime::try_from(at)
            .map_err(|e| format!("cannot name that time in OSC: {e:?}"))?;
        self.send_packet(&OscPacket::Bundle(rosc::OscBundle {
            timetag,
            content: vec![OscPacket::Message(msg)],
        }))?;
        self.wait_done(&address)
    }

    /// Waits for the `/done` of command `address` (returned) or its `/fail` (an
    /// error with the reason).
    fn wait_done(&self, address: &str) -> Result<OscMessage, String> {
        let reply = self.wait_for(|m| {
            (m.addr == "/done" || m.addr == "/fail") && m.args.first() == Some(&osc::text(address))
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

/// The error for a server port that refused a datagram: no modsynthd runs there.
fn nothing_listens(server: SocketAddr) -> String {
    format!("nothing listens at {server} (is modsynthd running? start it with scripts/live or modsynthd)")
}
