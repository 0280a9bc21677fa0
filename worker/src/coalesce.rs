//! Parameter changes that meet a full command ring: the last value wins.
//!
//! The real-time thread empties its ring once a period; a burst of changes (a
//! controller's knob, a script, a flood) can fill it between two periods. Waiting
//! for room would block the worker's ipc reader and, behind it, the supervisor;
//! dropping would lose the knob's final position. So an immediate change that does
//! not fit is held, one slot per parameter, a newer one replacing the held one
//! (counted as `coalesced`: what a knob wants is where it ends up), and held changes
//! go to the ring as soon as it has room. Only a scheduled change (a bundle with a
//! timetag) that does not fit is dropped, counted: it cannot be merged with another.
//!
//! ```
//! use modsynth_worker::coalesce::Coalescer;
//! use modsynth_worker::engine::{ParamChange, SendError};
//! use std::cell::{Cell, RefCell};
//!
//! let (room, ring) = (Cell::new(false), RefCell::new(Vec::new()));
//! let mut send = |c: ParamChange| {
//!     if !room.get() { return Err(SendError::Full) }
//!     ring.borrow_mut().push(c.value);
//!     Ok(())
//! };
//! let knob = |value| ParamChange { index: 0, value, at: None, received: None };
//! let mut c = Coalescer::default();
//! assert_eq!(c.offer(knob(1.0), &mut send), 0); // the ring is full: held
//! assert_eq!(c.offer(knob(2.0), &mut send), 0); // replaces 1.0
//! room.set(true);
//! assert_eq!(c.flush(&mut send), 1);
//! assert_eq!((ring.take(), c.coalesced), (vec![2.0], 1));
//! ```

use crate::engine::{ParamChange, SendError};
use modsynth_model::catalog::MAX_PARAMS;
use modsynth_process::logging::RateLimit;
use std::time::Duration;

/// Held changes, one per parameter, and what became of the others.
#[derive(Debug)]
pub struct Coalescer {
    held: [Option<ParamChange>; MAX_PARAMS],
    /// Changes replaced by a newer one of the same parameter before they fit.
    pub coalesced: u64,
    /// Scheduled changes dropped because the ring was full.
    pub dropped: u64,
    dropped_log: RateLimit,
}

impl Default for Coalescer {
    fn default() -> Coalescer {
        Coalescer {
            held: [None; MAX_PARAMS],
            coalesced: 0,
            dropped: 0,
            dropped_log: RateLimit::new(Duration::from_secs(5)),
        }
    }
}

impl Coalescer {
    /// Changes held now.
    pub fn held(&self) -> u64 {
        self.held.iter().filter(|h| h.is_some()).count() as u64
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.iter().all(Option::is_none)
    }

    /// Sends held changes while the ring takes them; returns how many it took.
    pub fn flush(&mut self, send: &mut impl FnMut(ParamChange) -> Result<(), SendError>) -> u64 {
        let mut sent = 0;
        for slot in self.held.iter_mut() {
            let Some(change) = *slot else { continue };
            if send(change).is_err() {
                break;
            }
            *slot = None;
            sent += 1;
        }
        sent
    }

    /// Sends `change` (after anything held), or holds or drops it as the module
    /// doc says; returns how many changes the ring took.
    pub fn offer(
        &mut self,
        change: ParamChange,
        send: &mut impl FnMut(ParamChange) -> Result<(), SendError>,
    ) -> u64 {
        let mut sent = self.flush(send);
        let index = change.index as usize;
        if index >= MAX_PARAMS {
            return sent; // the engine would ignore it too
        }
        if change.at.is_none() && self.held[index].is_some() {
            // Still no room: the newer value replaces the held one.
            self.held[index] = Some(change);
            self.coalesced += 1;
            return sent;
        }
        match send(change) {
            Ok(()) => sent += 1,
            Err(_) if change.at.is_none() => self.held[index] = Some(change),
            Err(e) => {
                self.dropped += 1;
                if let Some(held_back) = self.dropped_log.allow() {
                    tracing::warn!(
                        "scheduled parameter change dropped: {e} ({} so far, {held_back} \
                         not logged)",
                        self.dropped
                    );
                }
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(index: u16, value: f32, at: Option<u32>) -> ParamChange {
        ParamChange {
            index,
            value,
            at,
            received: None,
        }
    }

    #[test]
    fn a_knob_flood_into_a_full_ring_ends_on_its_last_value_and_counts_the_rest() {
        let mut ring: Vec<(u16, f32)> = Vec::new();
        let room = std::cell::Cell::new(2usize);
        let mut send = |c: ParamChange| {
            if room.get() == 0 {
                return Err(SendError::Full);
            }
            room.set(room.get() - 1);
            ring.push((c.index, c.value));
            Ok(())
        };
        let mut c = Coalescer::default();
        let mut sent = 0;
        for i in 0..1000 {
            sent += c.offer(change(0, i as f32, None), &mut send);
            sent += c.offer(change(1, -(i as f32), None), &mut send);
        }
        sent += c.offer(change(2, 5.0, Some(100)), &mut send);
        assert_eq!((sent, c.held(), c.coalesced, c.dropped), (2, 2, 1996, 1));
        room.set(10);
        sent += c.flush(&mut send);
        assert_eq!(sent, 4);
        assert!(c.is_empty());
        // Every change is accounted for: sent + coalesced + dropped.
        assert_eq!(sent + c.coalesced + c.dropped, 2001);
        assert_eq!(&ring[2..], &[(0, 999.0), (1, -999.0)]);
    }
}
