//! SLIP framing (RFC 1055) of OSC packets over a stream, as OSC 1.1 specifies for
//! TCP: every packet is sent as `END packet-with-END-and-ESC-escaped END`, and a
//! receiver takes the bytes between two `END`s as one packet (empty frames, from
//! the double `END`, are skipped).
//!
//! Written here rather than taken from a crate: the codec is thirty lines, and the
//! crates found (`slip-codec`, `serial-line-ip`) bring async runtimes or embedded
//! buffers this needs neither of. The decoder bounds every frame (a stream that
//! never sends `END` cannot grow memory) and never panics on any byte sequence.
//!
//! ```
//! use modsynth_protocol::slip::{encode, Decoder};
//!
//! let wire = encode(&[1, 0xC0, 0xDB, 2]);
//! assert_eq!(wire, vec![0xC0, 1, 0xDB, 0xDC, 0xDB, 0xDD, 2, 0xC0]);
//! let mut frames = Vec::new();
//! Decoder::new(64).push(&wire, |f| frames.push(f.map(<[u8]>::to_vec)));
//! assert_eq!(frames, vec![Ok(vec![1, 0xC0, 0xDB, 2])]);
//! ```

/// Ends a frame.
pub const END: u8 = 0xC0;
/// Starts an escape.
pub const ESC: u8 = 0xDB;
/// `ESC ESC_END` is a literal `END`.
pub const ESC_END: u8 = 0xDC;
/// `ESC ESC_ESC` is a literal `ESC`.
pub const ESC_ESC: u8 = 0xDD;

/// One packet as a SLIP frame (with an `END` before it, as OSC 1.1 recommends, so
/// that line noise before it ends up in a frame of its own).
pub fn encode(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 8);
    out.push(END);
    for &b in packet {
        match b {
            END => out.extend([ESC, ESC_END]),
            ESC => out.extend([ESC, ESC_ESC]),
            b => out.push(b),
        }
    }
    out.push(END);
    out
}

/// A frame the decoder could not take whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// Longer than the decoder's limit: skipped up to its `END`.
    TooLong,
    /// An `ESC` followed by something other than `ESC_END` or `ESC_ESC`.
    BadEscape,
}

/// Splits a byte stream into frames of at most `limit` bytes.
#[derive(Debug)]
pub struct Decoder {
    frame: Vec<u8>,
    limit: usize,
    escaped: bool,
    /// The current frame is being skipped (too long or badly escaped).
    skipping: Option<BadFrame>,
}

impl Decoder {
    /// A decoder for frames of at most `limit` bytes.
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            frame: Vec::new(),
            limit,
            escaped: false,
            skipping: None,
        }
    }

    /// Feeds `bytes`; calls `frame` with every complete frame (or why it was bad).
    pub fn push(&mut self, bytes: &[u8], mut frame: impl FnMut(Result<&[u8], BadFrame>)) {
        for &b in bytes {
            if b == END {
                match self.skipping.take() {
                    Some(bad) => frame(Err(bad)),
                    None if !self.frame.is_empty() => frame(Ok(&self.frame)),
                    None => {}
                }
                self.frame.clear();
                self.escaped = false;
                continue;
            }
            if self.skipping.is_some() {
                continue;
            }
            let byte = if std::mem::take(&mut self.escaped) {
                match b {
                    ESC_END => END,
                    ESC_ESC => ESC,
                    _ => {
                        self.skipping = Some(BadFrame::BadEscape);
                        continue;
                    }
                }
            } else if b == ESC {
                self.escaped = true;
                continue;
            } else {
                b
            };
            if self.frame.len() == self.limit {
                self.skipping = Some(BadFrame::TooLong);
                self.frame.clear();
                continue;
            }
            self.frame.push(byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(limit: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, BadFrame>> {
        let mut d = Decoder::new(limit);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, |f| out.push(f.map(<[u8]>::to_vec)));
        }
        out
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let wire: Vec<u8> = [encode(&[1, 2, END]), encode(&[ESC]), encode(&[])].concat();
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(
                frames(16, &[a, b]),
                vec![Ok(vec![1, 2, END]), Ok(vec![ESC])],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn long_and_badly_escaped_frames_are_skipped_and_reported() {
        let long = encode(&[7; 20]);
        let bad = [END, 1, ESC, 9, 2, END];
        let good = encode(&[3]);
        assert_eq!(
            frames(8, &[&long, &bad, &good]),
            vec![
                Err(BadFrame::TooLong),
                Err(BadFrame::BadEscape),
                Ok(vec![3])
            ]
        );
    }
}
