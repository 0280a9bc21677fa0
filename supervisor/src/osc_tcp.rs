//! OSC over TCP beside UDP (OSC 1.1: SLIP-framed packets), on the same port and
//! address space; replies go back on the connection they answer.
//!
//! Why: UDP drops under load, and a `/status.reply` larger than one datagram cannot
//! be sent at all; TCP does neither. Each connection has a reader thread (frames
//! into the core's inbox, at most [`QUEUE_LIMIT`](crate::osc_server::QUEUE_LIMIT)
//! messages waiting: a full inbox holds the reader back, TCP's flow control then
//! slows the sender, and nothing is lost) and a writer thread fed through a bounded channel: the core only ever
//! `try_send`s, so a slow or dead client never blocks it. A client that lets
//! [`REPLY_QUEUE`] replies pile up is disconnected. At most [`MAX_CONNECTIONS`]
//! at once; senders outside the allowlist are closed at once.

use crate::event_loop::EventSender;
use crate::osc_server::{self, Access, Clock, Traffic};
use modsynth_process::logging::RateLimit;
use modsynth_protocol::packet::MAX_PACKET;
use modsynth_protocol::slip;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 64;

/// Replies waiting for a connection's writer; a client that does not read them is
/// disconnected rather than let them grow.
pub const REPLY_QUEUE: usize = 1024;

/// How long a write to a client may block its writer thread (only that thread).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The open connections, by peer address: how the runtime sends replies.
#[derive(Clone, Default)]
pub struct Connections {
    inner: Arc<Mutex<HashMap<SocketAddr, Connection>>>,
}

struct Connection {
    replies: SyncSender<Vec<u8>>,
    /// To shut it down from outside its threads (a client that reads nothing).
    stream: TcpStream,
}

/// What became of a reply to a TCP peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued for the connection's writer.
    Queued,
    /// `to` is not a TCP peer: send it by UDP.
    NotTcp,
    /// The client let replies pile up: it was disconnected.
    Disconnected,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Connection>> {
        // A poisoned lock only means a panic elsewhere, which aborts the process.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `packet` (one encoded OSC packet, any size) for peer `to`.
    pub fn send(&self, to: SocketAddr, packet: &[u8]) -> Sent {
        let mut conns = self.lock();
        let Some(conn) = conns.get(&to) else {
            return Sent::NotTcp;
        };
        match conn.replies.try_send(slip::encode(packet)) {
            Ok(()) => Sent::Queued,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let _ = conn.stream.shutdown(Shutdown::Both);
                conns.remove(&to);
                Sent::Disconnected
            }
        }
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

/// Accepts connections on `listener` on a new thread.
pub fn spawn(
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    events: EventSender,
    traffic: Arc<Traffic>,
    access: Access,
    conns: Connections,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("osc-tcp".into())
        .spawn(move || {
            let mut refused_log = RateLimit::new(Duration::from_secs(5));
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                if !access.allows(peer.ip()) {
                    osc_server::not_allowed(&traffic);
                    continue; // dropping it closes it
                }
                if conns.count() >= MAX_CONNECTIONS {
                    if let Some(held) = refused_log.allow() {
                        tracing::warn!(
                            "OSC over TCP: {MAX_CONNECTIONS} connections open, closing \
                             {peer} ({held} more not logged)"
                        );
                    }
                    continue;
                }
                if let Err(e) = serve(stream, peer, &clock, &events, &traffic, &conns) {
                    tracing::warn!("OSC over TCP: {peer}: {e}");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the OSC TCP thread: {e}"))
}

/// Starts the reader and writer threads of one connection.
fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    clock: &Arc<dyn Clock>,
    events: &EventSender,
    traffic: &Arc<Traffic>,
    conns: &Connections,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let (replies, queue) = mpsc::sync_channel::<Vec<u8>>(REPLY_QUEUE);
    let mut writer = stream.try_clone()?;
    let control = stream.try_clone()?;
    conns.lock().insert(
        peer,
        Connection {
            replies,
            stream: control,
        },
    );
    let forget = {
        let conns = conns.clone();
        move || {
            if let Some(c) = conns.lock().remove(&peer) {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
        }
    };
    let forget_too = forget.clone();
    std::thread::Builder::new()
        .name("osc-tcp-write".into())
        .spawn(move || {
            // Ends when the connection is forgotten (its sender dropped) or a
            // write fails (the client is gone or reads nothing for 5 s).
            for bytes in queue {
                if writer.write_all(&bytes).is_err() {
                    forget_too();
                    return;
                }
            }
        })
        .inspect_err(|_| forget())?;
    let (clock, events, traffic) = (clock.clone(), events.clone(), traffic.clone());
    std::thread::Builder::new()
        .name("osc-tcp-read".into())
        .spawn(move || {
            let mut reader = stream;
            let mut decoder = slip::Decoder::new(MAX_PACKET);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut alive = true;
                decoder.push(&buf[..n], |frame| {
                    if !alive {
                        return;
                    }
                    // A frame too long or badly escaped is a packet that cannot
                    // be decoded: refused like a malformed one.
                    let bytes = frame.unwrap_or(&[]);
                    alive = osc_server::deliver(bytes, peer, &*clock, &events, &traffic);
                });
                if !alive {
                    break;
                }
            }
            forget();
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_reads_nothing_is_disconnected_not_waited_for() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        let conns = Connections::default();
        let (replies, _queue) = mpsc::sync_channel(2);
        conns.lock().insert(
            peer,
            Connection {
                replies,
                stream: server_side,
            },
        );
        assert_eq!(conns.send(peer, b"a"), Sent::Queued);
        assert_eq!(conns.send(peer, b"b"), Sent::Queued);
        // Nobody takes them: the third finds the queue full, at once.
        assert_eq!(conns.send(peer, b"c"), Sent::Disconnected);
        assert_eq!(conns.send(peer, b"d"), Sent::NotTcp);
        let mut rest = Vec::new();
        let mut client = client;
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.read_to_end(&mut rest).unwrap(), 0, "closed");
    }
}
