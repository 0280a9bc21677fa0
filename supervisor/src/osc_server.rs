//! The OSC UDP socket, read by the core's own loop: datagrams are decoded, stamped
//! with JACK time and handed to the core with no thread in between. It decides
//! nothing about modules; it does decide what reaches the core at all:
//!
//! - senders outside the allowlist ([`Access`]) get nothing, counted as `not_allowed`;
//! - every packet is decoded by [`modsynth_protocol::packet`], which never panics
//!   (timetags are plain numbers, nesting is limited, far future is refused);
//! - the loop reads at most [`BATCH`] datagrams per wake-up before it looks at its
//!   other sources again, so a flood cannot keep worker messages, deaths or timers
//!   waiting; what waits meanwhile waits in the socket's receive buffer
//!   ([`RECEIVE_BUFFER`]), the one queue UDP has, and what the kernel drops when it
//!   is full is counted (`SO_RXQ_OVFL`);
//! - OSC over TCP ([`osc_tcp`](crate::osc_tcp)) is read on threads of its own and
//!   reaches the core through its inbox: at most [`QUEUE_LIMIT`] messages wait
//!   there, at most [`SENDER_LIMIT`] of them from one connection, and a full queue
//!   holds the connection's reader back (TCP then slows the sender, nothing is lost).
//!
//! All of it is counted per sender in [`Traffic`], which `/status` reports.

use crate::core::Event;
use crate::event_loop::EventSender;
use ipnet::IpNet;
use modsynth_process::logging::RateLimit;
use modsynth_protocol::packet::{self, Due};
use modsynth_protocol::status::{SourceCounts, TrafficReport};
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Messages over TCP that may wait in the core's inbox. The core handles a
/// `/module/set` in a few microseconds, so 4096 is a few milliseconds of work:
/// enough to absorb a burst, small enough that `/status` behind a flood still
/// answers within a second.
pub const QUEUE_LIMIT: u64 = 4096;

/// Messages of one TCP connection that may wait in the core's inbox: a client
/// sent while another floods waits behind no more than a quarter of the queue.
pub const SENDER_LIMIT: u64 = 1024;

/// Datagrams the loop reads from the socket per wake-up before it looks at its
/// other sources (the rest wait in the receive buffer, and the socket is still
/// ready at the next wait). 64 `/module/set`s are a few hundred microseconds of
/// the core's time.
pub const BATCH: usize = 64;

/// The receive buffer asked for. Linux caps it at `net.core.rmem_max` unless the
/// process may force it (CAP_NET_ADMIN); `/status` reports what was granted.
pub const RECEIVE_BUFFER: usize = 4 << 20;

/// Senders counted one by one; beyond this many, new ones are counted as `other`
/// (the table must not grow without bound).
pub const MAX_SOURCES: usize = 256;

/// Where JACK time comes from (the supervisor's own client; a fake in tests).
pub trait Clock: Send + Sync + 'static {
    /// Estimated current JACK frame.
    fn frame_now(&self) -> u32;
    /// JACK's clock now, in microseconds.
    fn usecs_now(&self) -> u64;
    /// The JACK frame at JACK time `usecs`.
    fn frame_at_usecs(&self, usecs: u64) -> u32;
}

impl Clock for jack::Client {
    fn frame_now(&self) -> u32 {
        self.frame_time()
    }

    fn usecs_now(&self) -> u64 {
        self.time()
    }

    fn frame_at_usecs(&self, usecs: u64) -> u32 {
        // JACK's own clock (microseconds) maps to frames through the server's DLL.
        self.time_to_frames(usecs)
    }
}

/// Who may send commands: loopback always, and the networks given with `--allow`.
#[derive(Clone, Debug, Default)]
pub struct Access {
    allow: Vec<IpNet>,
}

impl Access {
    /// Parses `--allow`: comma-separated CIDRs or single addresses
    /// (`192.168.1.0/24,10.0.0.7`).
    pub fn parse(list: &str) -> Result<Access, String> {
        let mut allow = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("--allow: '{part}' is not an address or CIDR (like 192.168.1.0/24)")
                })?;
            allow.push(net);
        }
        Ok(Access { allow })
    }

    /// Whether no network beyond loopback is allowed.
    pub fn is_loopback_only(&self) -> bool {
        self.allow.is_empty()
    }

    /// Whether `ip` may send commands.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_loopback() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// OSC traffic counts, shared by the OSC thread (which counts arrivals and drops),
/// the runtime (which counts `/fail` replies) and the core's loop (which takes
/// messages off the queue).
#[derive(Debug)]
pub struct Traffic {
    counts: Mutex<Counts>,
    /// Messages waiting for the core, all senders (also counted per sender in
    /// `Counts::in_flight`, under the lock).
    queued: AtomicU64,
    receive_buffer: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    kernel_drops: u64,
    not_allowed: u64,
    far_future: u64,
    sources: HashMap<IpAddr, SourceCounts>,
    other: SourceCounts,
    /// Messages waiting for the core, by sender (address and port); a sender
    /// with none has no entry.
    in_flight: HashMap<SocketAddr, u64>,
}

impl Counts {
    fn source(&mut self, ip: IpAddr) -> &mut SourceCounts {
        let ip = ip.to_canonical();
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            return &mut self.other;
        }
        self.sources.entry(ip).or_default()
    }
}

impl Traffic {
    /// Empty counts.
    pub fn new() -> Arc<Traffic> {
        Arc::new(Traffic {
            counts: Mutex::new(Counts::default()),
            queued: AtomicU64::new(0),
            receive_buffer: AtomicU64::new(0),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counts) -> R) -> R {
        // A poisoned lock only means a panic elsewhere, which aborts the process.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut counts)
    }

    /// The core took one OSC message of `from` off its queue.
    pub fn taken(&self, from: SocketAddr) {
        // Never below zero, even if counting went wrong somewhere.
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.with(|c| {
            if let Some(n) = c.in_flight.get_mut(&from) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.in_flight.remove(&from);
                }
            }
        });
    }

    /// Takes a place in the queue for a message of `from`, if the queue and the
    /// sender's share of it have room.
    fn admit(&self, from: SocketAddr) -> bool {
        self.with(|c| {
            let mine = c.in_flight.get(&from).copied().unwrap_or(0);
            if self.queued.load(Ordering::Acquire) >= QUEUE_LIMIT || mine >= SENDER_LIMIT {
                return false;
            }
            *c.in_flight.entry(from).or_default() += 1;
            self.queued.fetch_add(1, Ordering::AcqRel);
            true
        })
    }

    /// A `/fail` went to `to`.
    pub fn refused(&self, to: SocketAddr) {
        self.with(|c| c.source(to.ip()).refused += 1);
    }

    /// The counts as `/status` reports them.
    pub fn report(&self) -> TrafficReport {
        let queued = self.queued.load(Ordering::Acquire);
        let receive_buffer = self.receive_buffer.load(Ordering::Relaxed);
        self.with(|c| {
            let mut sources: std::collections::BTreeMap<String, SourceCounts> = c
                .sources
                .iter()
                .map(|(ip, n)| (ip.to_string(), *n))
                .collect();
            if c.other != SourceCounts::default() {
                sources.insert("other".into(), c.other);
            }
            TrafficReport {
                kernel_drops: c.kernel_drops,
                not_allowed: c.not_allowed,
                far_future: c.far_future,
                queued,
                queue_limit: QUEUE_LIMIT,
                receive_buffer,
                sources,
            }
        })
    }
}

/// Sizes the socket's receive buffer up and turns on drop counting
/// (`SO_RXQ_OVFL`). Failures are logged: the socket works without them.
fn tune(socket: &UdpSocket, traffic: &Traffic) {
    if socket::setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        if let Err(e) = socket::setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER) {
            tracing::warn!("cannot size the OSC receive buffer: {e}");
        }
    }
    if let Ok(granted) = socket::getsockopt(socket, sockopt::RcvBuf) {
        traffic
            .receive_buffer
            .store(granted as u64, Ordering::Relaxed);
    }
    if let Err(e) = socket::setsockopt(socket, sockopt::RxqOvfl, &1) {
        tracing::warn!("cannot count dropped OSC datagrams (SO_RXQ_OVFL): {e}");
    }
}

/// The OSC UDP socket as the core's loop reads it.
pub struct OscSocket {
    socket: UdpSocket,
    clock: Arc<dyn Clock>,
    traffic: Arc<Traffic>,
    access: Access,
    buf: Vec<u8>,
    cmsg: Vec<u8>,
    error_log: RateLimit,
}

impl OscSocket {
    /// Makes `socket` non-blocking, sizes its receive buffer and turns drop
    /// counting on.
    pub fn new(
        socket: UdpSocket,
        clock: Arc<dyn Clock>,
        traffic: Arc<Traffic>,
        access: Access,
    ) -> Result<OscSocket, String> {
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("OSC socket: {e}"))?;
        tune(&socket, &traffic);
        Ok(OscSocket {
            socket,
            clock,
            traffic,
            access,
            buf: vec![0u8; 65536],
            cmsg: nix::cmsg_space!(u32),
            error_log: RateLimit::new(Duration::from_secs(5)),
        })
    }

    /// The socket, for the loop's epoll set.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Reads what waits on the socket, [`BATCH`] datagrams at most, and gives each
    /// message in them to `handle` as an [`Event::Osc`] (a refused one too: the
    /// core answers it with its `/fail`).
    pub fn receive(&mut self, mut handle: impl FnMut(Event)) {
        for _ in 0..BATCH {
            let (len, from, dropped) = match receive(&self.socket, &mut self.buf, &mut self.cmsg) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(e) => {
                    if let Some(held) = self.error_log.allow() {
                        tracing::warn!("osc receive: {e} ({held} more not shown)");
                    }
                    return;
                }
            };
            if let Some(total) = dropped {
                self.traffic.with(|c| c.kernel_drops = u64::from(total));
            }
            if !self.access.allows(from.ip()) {
                not_allowed(&self.traffic);
                continue;
            }
            decode(
                &self.buf[..len],
                from,
                &*self.clock,
                &self.traffic,
                |event| {
                    handle(event);
                    true
                },
            );
        }
    }
}

/// Decodes one packet from `from` and gives its messages to `each` as events,
/// counting them; stops early (`false`) when `each` says so.
fn decode(
    bytes: &[u8],
    from: SocketAddr,
    clock: &dyn Clock,
    traffic: &Traffic,
    mut each: impl FnMut(Event) -> bool,
) -> bool {
    let received = clock.frame_now();
    let mut send = |request, at| {
        traffic.with(|c| c.source(from.ip()).received += 1);
        each(Event::Osc {
            from,
            request,
            received,
            at,
        })
    };
    // The wall clock and JACK's clock read together, before decoding: a time
    // ahead of one is the same time ahead of the other, however long decoding
    // takes (each 21 us of drift between them is a frame off).
    let (now, jack_now) = (SystemTime::now(), clock.usecs_now());
    match packet::decode_packet(bytes, now) {
        Ok(items) => items.into_iter().all(|item| {
            let at = match item.due {
                Due::Now => None,
                Due::In(ahead) => {
                    Some(clock.frame_at_usecs(jack_now.saturating_add(ahead.as_micros() as u64)))
                }
            };
            send(item.request, at)
        }),
        Err(refused) => {
            if refused.far_future {
                traffic.with(|c| c.far_future += 1);
            }
            send(Err(refused.fail), None)
        }
    }
}

/// Decodes one packet from TCP peer `from` and puts its messages in the core's
/// inbox, waiting while the inbox holds [`QUEUE_LIMIT`] messages or `from` has
/// [`SENDER_LIMIT`] there (the caller is that connection's reader: waiting holds
/// its sender back through TCP's flow control, and nothing is lost). `false` once
/// the core is gone.
pub fn deliver(
    bytes: &[u8],
    from: SocketAddr,
    clock: &dyn Clock,
    events: &EventSender,
    traffic: &Traffic,
) -> bool {
    decode(bytes, from, clock, traffic, |event| {
        while !traffic.admit(from) {
            std::thread::sleep(Duration::from_millis(1));
        }
        events.send(event).is_ok()
    })
}

/// Counts a sender refused by the allowlist.
pub fn not_allowed(traffic: &Traffic) {
    traffic.with(|c| c.not_allowed += 1);
}

/// One datagram: its length, sender and the kernel's running count of datagrams
/// dropped on this socket (when it says). `None`: not from an IP sender.
fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> nix::Result<Option<(usize, SocketAddr, Option<u32>)>> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(cmsg),
        MsgFlags::empty(),
    )?;
    let mut dropped = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::RxqOvfl(n) = c {
                dropped = Some(n);
            }
        }
    }
    let from = msg.address.and_then(|a| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::from((v4.ip(), v4.port())))
        } else {
            a.as_sockaddr_in6()
                .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
        }
    });
    Ok(from.map(|from| (msg.bytes, from, dropped)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_always_allowed_other_addresses_only_when_listed() {
        let none = Access::parse("").unwrap();
        assert!(none.is_loopback_only());
        assert!(none.allows("127.0.0.1".parse().unwrap()));
        assert!(none.allows("::1".parse().unwrap()));
        assert!(none.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!none.allows("192.168.1.5".parse().unwrap()));
        let lan = Access::parse("192.168.1.0/24, 10.0.0.7").unwrap();
        assert!(lan.allows("192.168.1.5".parse().unwrap()));
        assert!(lan.allows("::ffff:192.168.1.5".parse().unwrap()));
        assert!(lan.allows("10.0.0.7".parse().unwrap()));
        assert!(!lan.allows("10.0.0.8".parse().unwrap()));
        assert!(!lan.allows("192.168.2.5".parse().unwrap()));
        assert!(Access::parse("192.168.1.0/33").is_err());
        assert!(Access::parse("lan").is_err());
    }

    #[test]
    fn the_source_table_is_bounded() {
        let t = Traffic::new();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.refused(SocketAddr::new(ip, 1));
        }
        let r = t.report();
        assert_eq!(r.sources.len(), MAX_SOURCES + 1);
        assert_eq!(r.sources["other"].refused, 10);
    }

    #[test]
    fn taking_from_an_empty_queue_does_not_wrap() {
        let t = Traffic::new();
        t.taken("127.0.0.1:1".parse().unwrap());
        assert_eq!(t.report().queued, 0);
    }

    #[test]
    fn one_sender_cannot_take_the_whole_queue() {
        let t = Traffic::new();
        let (flooder, knob) = (
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:2000".parse().unwrap(),
        );
        let admitted = (0..10 * SENDER_LIMIT).filter(|_| t.admit(flooder)).count();
        assert_eq!(admitted as u64, SENDER_LIMIT);
        assert!(t.admit(knob), "another sender still gets in");
        t.taken(flooder);
        assert!(t.admit(flooder), "a place freed is a place taken");
        assert!(!t.admit(flooder));
    }
}
