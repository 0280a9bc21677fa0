//! Where the playing sequencer's bars fall in JACK frames, for `/set/switch ...
//! bar N`.
//!
//! A bar is one pass through a `seq`'s pattern: `steps` steps (16 steps at
//! `div` 4 is one 4/4 bar of sixteenths; 8 steps at `div` 2 one bar of eighths).
//! Bar 1 begins on the sequencer's first step; bar `N` on step `(N - 1) * steps`.
//! The seq counts its position as samples since its last tempo change plus the
//! steps it had played by then (`worker/src/dsp/seq.rs`), and publishes that state
//! with the JACK frame it holds for, every period (for its standby); from it, the
//! frame of any later step follows exactly while the tempo stays.

use super::*;
use modsynth_model::protocol::SeqPosition;

/// The furthest ahead a bar may be placed: JACK frame numbers wrap after 2^32
/// frames (24.8 h at 48 kHz); an hour is past any set list's need.
const MAX_AHEAD_S: f64 = 3600.0;

/// The JACK frame bar `on` begins on (and its number, 1-based) for a seq at
/// `position`, the earliest allowed being `earliest` (a switch needs time to
/// reach every worker). `steps` is the seq's pattern length.
pub(super) fn bar_frame(
    position: &SeqPosition,
    on: OnBar,
    steps: u32,
    earliest: u32,
) -> Result<(u32, u64), String> {
    let p = position;
    {
        if !(p.rate > 0.0 && p.rate.is_finite() && p.origin.is_finite()) {
            return Err("it has not played a step yet".into());
        }
        let steps = f64::from(steps.max(1));
        let per_step = 60.0 * p.sample_rate / p.rate;
        // Frames from the published state to the earliest frame (may be negative
        // if the state is newer, which it is not; wrapping arithmetic).
        let ahead = earliest.wrapping_sub(p.frame) as i32 as f64;
        let position = p.origin + (p.samples as f64 + ahead) / per_step;
        let playing = (position / steps).floor() as u64 + 1;
        let bar = match on {
            OnBar::Bar(n) => u64::from(n),
            OnBar::Next(k) => playing + u64::from(k) - 1 + u64::from(position % steps > 0.0),
        };
        let first_step = (bar - 1) as f64 * steps;
        if first_step < position {
            return Err(format!(
                "bar {bar} began already (bar {playing} plays now): give a later bar, or +1 for the next"
            ));
        }
        let at_sample = ((first_step - p.origin) * per_step).ceil();
        let from_state = at_sample - p.samples as f64;
        if from_state - ahead > MAX_AHEAD_S * p.sample_rate {
            return Err(format!(
                "bar {bar} begins more than {MAX_AHEAD_S} s from now: give an earlier bar"
            ));
        }
        Ok((p.frame.wrapping_add(from_state as i64 as u32), bar))
    }
}

impl Core {
    /// The playing sequencer whose bars a switch lands on: (id, its primary's
    /// worker, its pattern length); `Err` says why there is none.
    pub(super) fn playing_seq(&self) -> Result<(String, WorkerId, u32), String> {
        let Some((id, m)) = self
            .modules
            .iter()
            .find(|(id, m)| m.spec.name == "seq" && !self.is_prepared(id))
        else {
            return Err("no seq module plays: a switch on a bar needs one (or use --at)".into());
        };
        if m.params[catalog::seq::CLOCK] >= 0.5 {
            return Err(format!(
                "{id} follows an external clock, so its bars cannot be foreseen: switch with --at"
            ));
        }
        if m.state.is_empty() {
            return Err(format!(
                "{id} publishes no position (it has no standby): create it with a standby to switch on its bars"
            ));
        }
        let steps = m.params[catalog::seq::STEPS]
            .round()
            .clamp(1.0, catalog::seq::STEPS_HELD as f32) as u32;
        Ok((id.clone(), m.worker, steps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 120 bpm, 4 steps a beat, at 48 kHz: a step is 6000 samples; 16 steps a bar.
    fn clock(frame: u32, samples: u64) -> SeqPosition {
        SeqPosition {
            frame,
            samples,
            origin: 0.0,
            rate: 480.0,
            sample_rate: 48_000.0,
        }
    }

    #[test]
    fn bars_fall_on_the_steps_the_seq_plays_them_on() {
        // The seq has played 10 steps (60_000 samples) at frame 1_000_000.
        let c = clock(1_000_000, 60_000);
        // Bar 2 begins on step 16: 36_000 samples later.
        assert_eq!(
            bar_frame(&c, OnBar::Bar(2), 16, 1_000_000),
            Ok((1_036_000, 2))
        );
        assert_eq!(
            bar_frame(&c, OnBar::Next(1), 16, 1_000_000),
            Ok((1_036_000, 2))
        );
        assert_eq!(
            bar_frame(&c, OnBar::Next(2), 16, 1_000_000),
            Ok((1_132_000, 3))
        );
        // Too close to reach the workers: the earliest frame is past bar 2's start.
        let late = bar_frame(&c, OnBar::Bar(2), 16, 1_036_001).unwrap_err();
        assert!(
            late.contains("bar 2 began already (bar 2 plays now)"),
            "{late}"
        );
        assert_eq!(
            bar_frame(&c, OnBar::Next(1), 16, 1_036_001),
            Ok((1_132_000, 3))
        );
        // JACK frame numbers wrap.
        let w = clock(u32::MAX - 999, 60_000);
        assert_eq!(
            bar_frame(&w, OnBar::Bar(2), 16, u32::MAX - 999),
            Ok((35_000, 2))
        );
    }

    #[test]
    fn a_tempo_change_counts_on_from_where_the_seq_was() {
        // Rebased at step 20 (bar 2), now 90 bpm * 4 = 360 steps/min: 8000 samples a step.
        let c = SeqPosition {
            origin: 20.0,
            samples: 8000,
            rate: 360.0,
            ..clock(500, 0)
        };
        // Now at step 21; bar 3 begins on step 32: 11 steps on.
        assert_eq!(
            bar_frame(&c, OnBar::Bar(3), 16, 500),
            Ok((500 + 11 * 8000, 3))
        );
    }

    #[test]
    fn a_seq_that_has_not_played_or_a_bar_too_far_is_refused() {
        let c = SeqPosition {
            rate: 0.0,
            ..clock(0, 0)
        };
        assert!(bar_frame(&c, OnBar::Bar(1), 16, 0).is_err());
        let c = clock(0, 0);
        let far = bar_frame(&c, OnBar::Bar(100_000), 16, 0).unwrap_err();
        assert!(far.contains("more than 3600 s"), "{far}");
    }
}
