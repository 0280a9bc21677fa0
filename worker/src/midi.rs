//! MIDI events as the real-time thread hands them to a kernel.
//!
//! JACK delivers a period's MIDI as a list of messages, each with the frame inside
//! the period it belongs to. [`MidiEvents`] copies the short messages of one period
//! into a fixed array allocated up front, so the real-time thread never allocates;
//! what does not fit, and what no kernel reads (SysEx, anything longer than three
//! bytes), is dropped and counted.
//!
//! ```
//! use modsynth_worker::midi::MidiEvents;
//!
//! let mut events = MidiEvents::new();
//! events.clear();
//! events.push(12, &[0x90, 60, 100], 256);
//! events.push(3000, &[0x80, 60, 0], 256); // past the period: lands on its last frame
//! events.push(20, &[0xF0, 1, 2, 3, 0xF7], 256); // SysEx: dropped, counted
//! assert_eq!(events.as_slice()[0].frame, 12);
//! assert_eq!(events.as_slice()[1].frame, 255);
//! assert_eq!(events.dropped(), 1);
//! ```

/// How many messages one period can carry into a kernel. A keyboard played hard
/// sends a few dozen per period; 512 also covers MIDI clock at any tempo and a
/// controller sweeping several CCs at once.
pub const CAPACITY: usize = 512;

/// One short MIDI message (one to three bytes) and the frame it belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MidiEvent {
    /// Frame inside the period, `0..n_frames` (JACK's timestamp, clamped).
    pub frame: u32,
    /// The message: status byte first; bytes past `len` are 0.
    pub bytes: [u8; 3],
    /// How many of `bytes` are the message (1..=3).
    pub len: u8,
}

impl MidiEvent {
    /// The message's bytes (`bytes[..len]`).
    pub fn message(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(3)]
    }
}

/// The MIDI messages of one period, in the order JACK delivered them (sorted by
/// frame), in storage that never grows.
pub struct MidiEvents {
    /// `events[..len]` are this period's messages.
    events: Box<[MidiEvent; CAPACITY]>,
    len: usize,
    /// Messages dropped since this buffer was made: no room, or not a short message.
    dropped: u64,
}

impl Default for MidiEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl MidiEvents {
    /// An empty buffer with room for [`CAPACITY`] messages. Allocates: build it off
    /// the real-time thread.
    pub fn new() -> MidiEvents {
        MidiEvents {
            events: Box::new([MidiEvent::default(); CAPACITY]),
            len: 0,
            dropped: 0,
        }
    }

    /// Forgets the previous period's messages.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Adds `bytes` at `frame` of a period of `n_frames` (a frame past the period,
    /// which a misbehaving client can send, lands on its last frame, so nothing is
    /// applied outside the period). Empty, longer than three bytes, or no room:
    /// dropped and counted.
    pub fn push(&mut self, frame: u32, bytes: &[u8], n_frames: usize) {
        if bytes.is_empty() || bytes.len() > 3 || self.len == CAPACITY {
            self.dropped += 1;
            return;
        }
        let mut event = MidiEvent {
            frame: frame.min(n_frames.saturating_sub(1) as u32),
            bytes: [0; 3],
            len: bytes.len() as u8,
        };
        event.bytes[..bytes.len()].copy_from_slice(bytes);
        // JACK sorts a port's events by time; a frame before the previous one would
        // make a kernel skip it, so it is moved up to the previous one.
        if let Some(last) = self.len.checked_sub(1).map(|i| self.events[i].frame) {
            event.frame = event.frame.max(last);
        }
        self.events[self.len] = event;
        self.len += 1;
    }

    /// This period's messages, sorted by frame.
    pub fn as_slice(&self) -> &[MidiEvent] {
        &self.events[..self.len]
    }

    /// How many messages were dropped since this buffer was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
