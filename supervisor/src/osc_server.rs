//! The OSC thread: receives datagrams, decodes them, stamps them with JACK time and
//! hands them to the core as events. It decides nothing about modules; it does
//! decide what reaches the core at all:
//!
//! - senders outside the allowlist ([`Access`]) get nothing, counted as `not_allowed`;
//! - every packet is decoded by [`modsynth_control::packet`], which never panics
//!   (timetags are plain numbers, nesting is limited, far future is refused);
//! - at most [`QUEUE_LIMIT`] messages wait for the core, at most [`SENDER_LIMIT`]
//!   of them from one sender: beyond that a message is dropped, counted and
//!   answered `/fail / busy` (a flood cannot grow memory, nor delay another
//!   sender's messages by more than its share of the queue);
//! - the kernel's own drops (receive buffer full) are read with `SO_RXQ_OVFL`.
//!
//! All of it is counted per sender in [`Traffic`], which `/status` reports.

use crate::core::Event;
use ipnet::IpNet;
use modsynth_control::osc::{self, Fail};
use modsynth_control::packet::{self, Due};
use modsynth_control::status::{SourceCounts, TrafficReport};
use modsynth_process::logging::RateLimit;
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Messages that may wait for the core. The core handles a `/module/set` in a few
/// microseconds, so 4096 is a few milliseconds of work: enough to absorb a burst
/// from a controller, small enough that `/status` behind a flood still answers
/// within a second.
pub const QUEUE_LIMIT: u64 = 4096;

/// Messages of one sender (address and port) that may wait for the core. The
/// queue is first come, first served: a knob sent while another program floods
/// waits behind what the flood has queued. Capping each sender's share keeps that
/// wait to a quarter of the queue however hard one sender floods, and still lets
/// a script send a burst of a thousand changes over UDP without a drop.
pub const SENDER_LIMIT: u64 = 1024;

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

/// Runs the OSC receive loop on a new thread.
pub fn spawn(
    socket: UdpSocket,
    clock: Arc<dyn Clock>,
    events: Sender<Event>,
    traffic: Arc<Traffic>,
    access: Access,
) -> Result<(), String> {
    tune(&socket, &traffic);
    std::thread::Builder::new()
        .name("osc".into())
        .spawn(move || receive_loop(&socket, &*clock, &events, &traffic, &access))
        .map(|_| ())
        .map_err(|e| format!("cannot start the OSC thread: {e}"))
}

fn receive_loop(
    socket: &UdpSocket,
    clock: &dyn Clock,
    events: &Sender<Event>,
    traffic: &Traffic,
    access: &Access,
) {
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!(u32);
    let mut error_log = RateLimit::new(Duration::from_secs(5));
    loop {
        let (len, from, dropped) = match receive(socket, &mut buf, &mut cmsg) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                if let Some(held) = error_log.allow() {
                    tracing::warn!("osc receive: {e} ({held} more not shown)");
                }
                // An error that repeats at once (none is known to) must not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if let Some(total) = dropped {
            traffic.with(|c| c.kernel_drops = u64::from(total));
        }
        if !access.allows(from.ip()) {
            not_allowed(traffic);
            continue;
        }
        let busy = |bytes: &[u8]| {
            let _ = socket.send_to(bytes, from);
        };
        let alive = deliver(
            &buf[..len],
            from,
            clock,
            events,
            traffic,
            WhenFull::Drop(&busy),
        );
        if !alive {
            return; // the core is gone: the supervisor is stopping
        }
    }
}

/// What a sender's message meets when the queue to the core is full.
pub enum WhenFull<'a> {
    /// Dropped, counted, and answered `/fail / busy` through this (UDP).
    Drop(&'a dyn Fn(&[u8])),
    /// Waits for room (TCP: the sender's stream is held back by TCP's own flow
    /// control instead, and nothing is lost).
    Wait,
}

/// Decodes one packet from `from` and hands its messages to the core (through the
/// bounded queue), counting them. `false` once the core is gone.
pub fn deliver(
    bytes: &[u8],
    from: SocketAddr,
    clock: &dyn Clock,
    events: &Sender<Event>,
    traffic: &Traffic,
    when_full: WhenFull,
) -> bool {
    let received = clock.frame_now();
    let send = |request, at| {
        traffic.with(|c| c.source(from.ip()).received += 1);
        if !traffic.admit(from) {
            match &when_full {
                WhenFull::Drop(reply) => {
                    traffic.with(|c| c.source(from.ip()).dropped += 1);
                    let busy =
                        Fail::new("/", "busy: too many messages waiting; this one was dropped");
                    reply(&osc::encode(busy.to_message()));
                    return true;
                }
                WhenFull::Wait => {
                    while !traffic.admit(from) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        events
            .send(Event::Osc {
                from,
                request,
                received,
                at,
            })
            .is_ok()
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
