//! Raw OSC packets (datagrams, or SLIP frames) into checked requests, with the time
//! each one is due.
//!
//! Every byte string is hostile: [`decode_packet`] never panics, whatever it is given
//! (a proptest in this crate feeds it random, truncated and bit-flipped packets).
//! Before `rosc` sees a packet, [`check_nesting`] walks the bundle structure without
//! allocating and refuses bundles nested deeper than [`MAX_BUNDLE_DEPTH`]: `rosc`
//! decodes nested bundles by recursion, and a 64 KiB datagram holds 3,000 levels.
//! Timetags are read as plain 64-bit NTP numbers ([`schedule`]): every value is
//! valid, a past one means "now", and one beyond [`SCHEDULE_HORIZON`] is refused.
//! (`rosc`'s `SystemTime::from(OscTime)` panics for timetags before 1970.)
//!
//! ```
//! use modsynth_protocol::packet::{decode_packet, Due};
//! use modsynth_protocol::osc::Request;
//! use rosc::{encoder, OscMessage, OscPacket};
//!
//! let bytes = encoder::encode(&OscPacket::Message(OscMessage {
//!     addr: "/status".into(),
//!     args: vec![],
//! }))
//! .unwrap();
//! let items = decode_packet(&bytes, std::time::SystemTime::now()).unwrap();
//! assert_eq!(items[0].request, Ok(Request::Status));
//! assert_eq!(items[0].due, Due::Now);
//! ```

use crate::osc::{self, Fail, Request};
use rosc::{OscPacket, OscTime};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bundles inside bundles inside bundles...: deeper than this is refused. Real
/// senders nest one or two levels (SuperCollider's scores, liblo); 8 leaves room.
pub const MAX_BUNDLE_DEPTH: usize = 8;

/// How far ahead a timetag may schedule a message. Further is refused (counted as
/// `far_future`): a parameter change a minute ahead is a mistake or an attack, and
/// every scheduled change holds a slot in a worker's ring until it is due.
pub const SCHEDULE_HORIZON: Duration = Duration::from_secs(60);

/// The largest packet taken (the largest UDP payload; SLIP frames likewise).
pub const MAX_PACKET: usize = 65_507;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// When a decoded message is to take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// As soon as possible (no bundle, "immediately", or a time already past).
    Now,
    /// This long after the packet was received.
    In(Duration),
}

/// One message of a packet, checked, with its time.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The request, or why it was refused.
    pub request: Result<Request, Fail>,
    /// When it is due.
    pub due: Due,
}

/// Why a whole packet was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    /// Becomes `/fail / <reason>`.
    pub fail: Fail,
    /// A timetag beyond [`SCHEDULE_HORIZON`] (counted apart from malformed packets).
    pub far_future: bool,
}

impl Refused {
    fn malformed(reason: String) -> Refused {
        Refused {
            fail: Fail::new("/", reason),
            far_future: false,
        }
    }
}

/// Decodes one packet received at `now` into its messages, each checked by
/// [`osc::decode`] and given its due time. A packet that is not OSC, nests bundles
/// too deep or names a time beyond the horizon is refused as a whole, so a bundle
/// is applied entirely or not at all.
pub fn decode_packet(bytes: &[u8], now: SystemTime) -> Result<Vec<Item>, Refused> {
    if bytes.len() > MAX_PACKET {
        return Err(Refused::malformed(format!(
            "packet of {} bytes; at most {MAX_PACKET}",
            bytes.len()
        )));
    }
    check_nesting(bytes).map_err(|e| Refused::malformed(e.into()))?;
    let packet = match rosc::decoder::decode_udp(bytes) {
        Ok((_, packet)) => packet,
        Err(e) => return Err(Refused::malformed(format!("malformed OSC packet: {e}"))),
    };
    let mut items = Vec::new();
    flatten(packet, Due::Now, now, &mut items)?;
    Ok(items)
}

fn flatten(
    packet: OscPacket,
    due: Due,
    now: SystemTime,
    items: &mut Vec<Item>,
) -> Result<(), Refused> {
    match packet {
        OscPacket::Message(msg) => items.push(Item {
            request: osc::decode(&msg),
            due,
        }),
        OscPacket::Bundle(bundle) => {
            let due = match schedule(bundle.timetag, now) {
                // An inner bundle that says "now" inherits its outer bundle's time.
                Some(Due::Now) => due,
                Some(later) => later,
                None => {
                    return Err(Refused {
                        fail: Fail::new(
                            "/",
                            format!(
                                "bundle timetag is more than {} s ahead",
                                SCHEDULE_HORIZON.as_secs()
                            ),
                        ),
                        far_future: true,
                    })
                }
            };
            for p in bundle.content {
                flatten(p, due, now, items)?;
            }
        }
    }
    Ok(())
}

/// When a bundle with timetag `tag`, received at `now`, is due: `Now` for
/// "immediately" (0 or 1) and any past time, `None` beyond [`SCHEDULE_HORIZON`].
/// Every 64-bit value is valid; this is integer arithmetic on NTP time and cannot
/// panic. (Timetags after NTP era 0 ends in 2036 would need the era; not yet.)
pub fn schedule(tag: OscTime, now: SystemTime) -> Option<Due> {
    let tag = (u64::from(tag.seconds) << 32) | u64::from(tag.fractional);
    if tag <= 1 {
        return Some(Due::Now);
    }
    let since_unix = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_secs = since_unix.as_secs().saturating_add(NTP_UNIX_OFFSET);
    // 32.32 fixed point; the fraction from nanoseconds rounds down (< 1 ns).
    let now_frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    let now_ntp = (now_secs << 32) | now_frac;
    if tag <= now_ntp {
        return Some(Due::Now);
    }
    let ahead = tag - now_ntp;
    let secs = ahead >> 32;
    let nanos = ((ahead & 0xffff_ffff) * 1_000_000_000) >> 32;
    let ahead = Duration::new(secs, nanos as u32);
    (ahead <= SCHEDULE_HORIZON).then_some(Due::In(ahead))
}

/// Walks the bundle structure of `bytes` (without decoding messages or allocating)
/// and refuses bundles nested deeper than [`MAX_BUNDLE_DEPTH`]. Element sizes that
/// do not fit are left for the decoder to refuse.
pub fn check_nesting(bytes: &[u8]) -> Result<(), &'static str> {
    const TAG: &[u8] = b"#bundle\0";
    // (remaining bytes of each open bundle's element list), innermost last.
    let mut stack: [&[u8]; MAX_BUNDLE_DEPTH] = [&[]; MAX_BUNDLE_DEPTH];
    let mut depth = 0;
    let mut current = bytes;
    loop {
        if current.starts_with(TAG) {
            if depth == MAX_BUNDLE_DEPTH {
                return Err("bundles nested too deep (at most 8 levels)");
            }
            // Skip the tag and the 8-byte timetag; what follows is the element list.
            stack[depth] = current.get(16..).unwrap_or(&[]);
            depth += 1;
        }
        // Next element of the innermost open bundle; close finished bundles.
        loop {
            if depth == 0 {
                return Ok(());
            }
            let list = stack[depth - 1];
            if list.len() < 4 {
                depth -= 1;
                continue;
            }
            let size = u32::from_be_bytes([list[0], list[1], list[2], list[3]]) as usize;
            let rest = &list[4..];
            if size > rest.len() {
                // The decoder refuses this bundle; nothing deeper to look at.
                depth -= 1;
                continue;
            }
            current = &rest[..size];
            stack[depth - 1] = &rest[size..];
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosc::{encoder, OscBundle, OscMessage, OscType};

    fn set_msg() -> OscPacket {
        OscPacket::Message(OscMessage {
            addr: "/module/set".into(),
            args: vec![
                OscType::String("a".into()),
                OscType::String("freq".into()),
                OscType::Float(1.0),
            ],
        })
    }

    fn bundle(tag: (u32, u32), content: Vec<OscPacket>) -> OscPacket {
        OscPacket::Bundle(OscBundle {
            timetag: tag.into(),
            content,
        })
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut p = set_msg();
        for _ in 0..depth {
            p = bundle((0, 1), vec![p]);
        }
        encoder::encode(&p).unwrap()
    }

    fn ntp(t: SystemTime) -> (u32, u32) {
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        (
            (d.as_secs() + NTP_UNIX_OFFSET) as u32,
            ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000) as u32,
        )
    }

    #[test]
    fn timetags_before_1970_mean_now_and_do_not_panic() {
        let now = SystemTime::now();
        for tag in [
            (0, 2),
            (0, u32::MAX),
            (1, 0),
            (12, 34),
            (NTP_UNIX_OFFSET as u32, 0),
        ] {
            assert_eq!(schedule(tag.into(), now), Some(Due::Now), "{tag:?}");
        }
        let bytes = encoder::encode(&bundle((0, 2), vec![set_msg()])).unwrap();
        let items = decode_packet(&bytes, now).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].due, Due::Now);
    }

    #[test]
    fn near_future_is_scheduled_far_future_is_refused_and_flagged() {
        let now = SystemTime::now();
        let soon = ntp(now + Duration::from_millis(1500));
        let Some(Due::In(ahead)) = schedule(soon.into(), now) else {
            panic!("not scheduled")
        };
        assert!(ahead > Duration::from_millis(1499) && ahead < Duration::from_millis(1501));
        for far in [ntp(now + Duration::from_secs(61)), (u32::MAX, u32::MAX)] {
            assert_eq!(schedule(far.into(), now), None);
            let bytes = encoder::encode(&bundle(far, vec![set_msg()])).unwrap();
            let refused = decode_packet(&bytes, now).unwrap_err();
            assert!(refused.far_future);
            assert!(refused.fail.reason.contains("60 s"), "{}", refused.fail);
        }
    }

    #[test]
    fn inner_bundles_saying_now_keep_the_outer_time() {
        let now = SystemTime::now();
        let soon = ntp(now + Duration::from_secs(2));
        let p = bundle(soon, vec![bundle((0, 1), vec![set_msg()])]);
        let items = decode_packet(&encoder::encode(&p).unwrap(), now).unwrap();
        assert!(matches!(items[0].due, Due::In(_)));
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_before_decoding() {
        assert!(decode_packet(&nested(MAX_BUNDLE_DEPTH), SystemTime::now()).is_ok());
        for depth in [MAX_BUNDLE_DEPTH + 1, 1000] {
            let e = decode_packet(&nested(depth), SystemTime::now()).unwrap_err();
            assert!(e.fail.reason.contains("nested too deep"), "{}", e.fail);
        }
    }

    #[test]
    fn garbage_is_a_clear_refusal() {
        for bytes in [&b""[..], b"#bundle", b"/module/set\0,sf", &[0xff; 40]] {
            let e = decode_packet(bytes, SystemTime::now()).unwrap_err();
            assert!(!e.far_future);
            assert_eq!(e.fail.address, "/");
        }
    }
}
