//! Pure signal analysis for checking what modules output: pitch by FFT, levels,
//! spectra, silences and discontinuities. No JACK here; everything works on plain
//! `&[f32]` slices and is unit-tested on synthetic signals.
//!
//! ```
//! use modsynth_tests::analysis::{cents, pitch_hz, rms};
//!
//! let sr = 48_000.0;
//! let sine: Vec<f32> = (0..24_000)
//!     .map(|n| (2.0 * std::f64::consts::PI * 440.0 * n as f64 / sr).sin() as f32)
//!     .collect();
//! assert!(cents(pitch_hz(&sine, sr), 440.0).abs() < 0.1);
//! assert!((rms(&sine) - 0.5f64.sqrt()).abs() < 1e-3);
//! ```

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use std::f64::consts::PI;

/// Zero-padding factor of [`pitch_hz`]: the FFT is this many times longer than the
/// next power of two above the signal.
const PITCH_PAD: usize = 8;
/// Bins (of the unpadded Blackman-Harris spectrum) around each harmonic that
/// [`strongest_non_harmonic_db`] ignores; the window's main lobe is ±4 bins wide.
const HARMONIC_GUARD_BINS: f64 = 6.0;

/// A periodic Hann window of length `n`.
fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos())
        .collect()
}

/// A 4-term Blackman-Harris window of length `n` (highest sidelobe -92 dB).
fn blackman_harris(n: usize) -> Vec<f64> {
    let (a0, a1, a2, a3) = (0.35875, 0.48829, 0.14128, 0.01168);
    (0..n)
        .map(|i| {
            let x = 2.0 * PI * i as f64 / n as f64;
            a0 - a1 * x.cos() + a2 * (2.0 * x).cos() - a3 * (3.0 * x).cos()
        })
        .collect()
}

/// The one-sided complex spectrum of `signal` (mean removed if `remove_mean`)
/// times `window`, zero-padded to `fft_len`.
fn spectrum(
    signal: &[f32],
    window: &[f64],
    fft_len: usize,
    remove_mean: bool,
) -> Vec<Complex<f64>> {
    let mean = if remove_mean && !signal.is_empty() {
        signal.iter().map(|&x| x as f64).sum::<f64>() / signal.len() as f64
    } else {
        0.0
    };
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(fft_len);
    let mut input = fft.make_input_vec();
    for (i, (&x, &w)) in signal.iter().zip(window).enumerate() {
        input[i] = (x as f64 - mean) * w;
    }
    let mut out = fft.make_output_vec();
    fft.process(&mut input, &mut out)
        .expect("buffer lengths come from the plan");
    out
}

/// Magnitudes in dB, with a floor so silence gives a finite number.
fn to_db(x: f64) -> f64 {
    20.0 * x.max(1e-300).log10()
}

/// Refines the peak at bin `k` of `mag` by fitting a parabola through the log
/// magnitudes of bins `k-1, k, k+1`; returns the fractional bin and the peak log
/// magnitude (natural log).
fn parabolic_peak(mag: &[f64], k: usize) -> (f64, f64) {
    if k == 0 || k + 1 >= mag.len() {
        return (k as f64, mag[k].max(1e-300).ln());
    }
    let (a, b, c) = (
        mag[k - 1].max(1e-300).ln(),
        mag[k].max(1e-300).ln(),
        mag[k + 1].max(1e-300).ln(),
    );
    let denom = a - 2.0 * b + c;
    if denom >= 0.0 {
        return (k as f64, b);
    }
    let p = 0.5 * (a - c) / denom;
    (k as f64 + p, b - 0.25 * (a - c) * p)
}

/// The frequency in Hz of the strongest spectral peak of `signal`.
///
/// Method: mean removed, Hann window, zero-padded by 8x (to a power of two), FFT
/// (`realfft`), strongest bin above the window's main lobe around DC (i.e. above
/// `2 * sample_rate / len` Hz), refined by parabolic interpolation of the log
/// magnitude. Resolves a 440 Hz sine from 0.5 s at 48 kHz to well within 0.1 cent.
///
/// It measures the strongest partial, which is the fundamental for the usual
/// oscillator shapes (sine, triangle, saw, square, pulse wider than ~1/3). Returns 0
/// for a signal with fewer than 4 samples or no peak.
///
/// ```
/// # use modsynth_tests::analysis::pitch_hz;
/// let saw: Vec<f32> = (0..24_000).map(|n| ((n as f32 * 220.0 / 48_000.0) % 1.0) * 2.0 - 1.0).collect();
/// assert!((pitch_hz(&saw, 48_000.0) - 220.0).abs() < 0.05);
/// ```
pub fn pitch_hz(signal: &[f32], sample_rate: f64) -> f64 {
    let n = signal.len();
    if n < 4 {
        return 0.0;
    }
    let fft_len = n.next_power_of_two() * PITCH_PAD;
    let spec = spectrum(signal, &hann(n), fft_len, true);
    let mag: Vec<f64> = spec.iter().map(|c| c.norm()).collect();
    let bin_hz = sample_rate / fft_len as f64;
    let lowest = ((2.0 * sample_rate / n as f64) / bin_hz).ceil() as usize;
    let Some(k) = (lowest.max(1)..mag.len())
        .max_by(|&a, &b| mag[a].total_cmp(&mag[b]))
        .filter(|&k| mag[k] > 0.0)
    else {
        return 0.0;
    };
    parabolic_peak(&mag, k).0 * bin_hz
}

/// The phase (radians, -pi..pi) of the `hz` partial of `signal` at its first
/// sample, by correlation with a cosine and a sine of that frequency: for a sine
/// of a known pitch, where its cycle stands.
///
/// ```
/// # use modsynth_tests::analysis::phase_at;
/// let x: Vec<f32> = (0..4800).map(|n| (std::f64::consts::TAU * 440.0 * n as f64 / 48_000.0 + 1.0).cos() as f32).collect();
/// assert!((phase_at(&x, 440.0, 48_000.0) - 1.0).abs() < 0.01);
/// ```
pub fn phase_at(signal: &[f32], hz: f64, sample_rate: f64) -> f64 {
    let (mut c, mut s) = (0.0f64, 0.0f64);
    for (n, &v) in signal.iter().enumerate() {
        let w = std::f64::consts::TAU * hz * n as f64 / sample_rate;
        c += v as f64 * w.cos();
        s += v as f64 * w.sin();
    }
    (-s).atan2(c)
}

/// How far (in frames) the `hz` tone in `signal` is, in its last 12 000 samples,
/// from where its first 12 000 say it should be, allowing it to be 0 to `ahead`
/// whole `period`s ahead: the smallest error over those (signed).
///
/// For a takeover: the module's own time goes on, and the periods the server
/// skipped as a worker died were played but never delivered, so the recording
/// skips them. A module out of step is off by a fraction of a cycle that no whole
/// number of periods explains (1024 frames are 9.39 cycles of 440 Hz: each period
/// lands 42 frames further in the 109-frame cycle).
///
/// ```
/// # use modsynth_tests::analysis::phase_error_frames;
/// let sine = |n: usize| (std::f64::consts::TAU * 440.0 * n as f64 / 48_000.0).sin() as f32;
/// // 1024 frames were played and never recorded, after sample 24 000.
/// let x: Vec<f32> = (0..48_000).map(|n| sine(if n < 24_000 { n } else { n + 1024 })).collect();
/// assert!(phase_error_frames(&x, 440.0, 48_000.0, 1024, 0).abs() > 10.0);
/// assert!(phase_error_frames(&x, 440.0, 48_000.0, 1024, 1).abs() < 0.01);
/// ```
pub fn phase_error_frames(
    signal: &[f32],
    hz: f64,
    sample_rate: f64,
    period: u32,
    ahead: u64,
) -> f64 {
    let window = 12_000.min(signal.len() / 2);
    phase_error_frames_in_windows(signal, window, hz, sample_rate, period, ahead)
}

/// [`phase_error_frames`] with the first and last `window` samples as the two
/// windows (at most half the signal each): for a recording whose server skipped
/// frames, windows that keep clear of every jump (see `Recording::jumps`), since a
/// window with a jump inside averages two phases into a fraction of a cycle.
pub fn phase_error_frames_in_windows(
    signal: &[f32],
    window: usize,
    hz: f64,
    sample_rate: f64,
    period: u32,
    ahead: u64,
) -> f64 {
    let window = window.min(signal.len() / 2);
    let late = signal.len() - window;
    let cycle = sample_rate / hz;
    let tau = std::f64::consts::TAU;
    let expected = phase_at(&signal[..window], hz, sample_rate) + late as f64 / cycle * tau;
    let got = phase_at(&signal[late..], hz, sample_rate);
    (0..=ahead)
        .map(|k| {
            let e = got - expected - k as f64 * period as f64 / cycle * tau;
            let e = (e + std::f64::consts::PI).rem_euclid(tau) - std::f64::consts::PI;
            e / tau * cycle
        })
        .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap_or(f64::INFINITY)
}

/// The interval from `reference` to `f` in cents (1200 per octave; positive when
/// `f` is higher).
///
/// ```
/// # use modsynth_tests::analysis::cents;
/// assert!((cents(880.0, 440.0) - 1200.0).abs() < 1e-9);
/// ```
pub fn cents(f: f64, reference: f64) -> f64 {
    1200.0 * (f / reference).log2()
}

/// Root mean square of `signal` (0 for an empty one).
pub fn rms(signal: &[f32]) -> f64 {
    if signal.is_empty() {
        return 0.0;
    }
    (signal.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / signal.len() as f64).sqrt()
}

/// The largest absolute sample value (0 for an empty signal; NaNs are ignored).
pub fn peak(signal: &[f32]) -> f32 {
    signal.iter().fold(0.0f32, |m, &x| m.max(x.abs()))
}

/// A one-sided magnitude spectrum.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    /// Width of one bin in Hz; bin `i` is at `i * bin_hz`.
    pub bin_hz: f64,
    /// Magnitude of each bin in dB, scaled so a full-scale (amplitude 1) sine
    /// centred on a bin reads 0 dB.
    pub db: Vec<f64>,
}

impl Spectrum {
    /// The frequency of bin `i` in Hz.
    pub fn freq(&self, i: usize) -> f64 {
        i as f64 * self.bin_hz
    }

    /// The bin nearest to `hz`, clamped to the spectrum.
    pub fn bin(&self, hz: f64) -> usize {
        ((hz / self.bin_hz).round().max(0.0) as usize).min(self.db.len().saturating_sub(1))
    }
}

/// The magnitude spectrum of `signal` with a Hann window, no zero-padding (bin width
/// `sample_rate / len`), in dB relative to a full-scale sine.
///
/// ```
/// # use modsynth_tests::analysis::magnitude_spectrum_db;
/// let sine: Vec<f32> = (0..4800).map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 48_000.0).sin() * 0.5).collect();
/// let s = magnitude_spectrum_db(&sine, 48_000.0);
/// assert!((s.db[s.bin(1000.0)] - (-6.02)).abs() < 0.1);
/// ```
pub fn magnitude_spectrum_db(signal: &[f32], sample_rate: f64) -> Spectrum {
    let n = signal.len().max(2);
    let window = hann(n);
    let scale = 2.0 / window.iter().sum::<f64>();
    let spec = spectrum(signal, &window, n, false);
    Spectrum {
        bin_hz: sample_rate / n as f64,
        db: spec.iter().map(|c| to_db(c.norm() * scale)).collect(),
    }
}

/// The power of `signal` between `lo_hz` and `hi_hz` (inclusive bins), in dB
/// relative to full scale as a mean square: the whole band of a signal reads
/// `10 * log10(mean(x^2))`, so a full-scale sine reads about -3.01 dB and silence
/// about -300 dB. Hann window, no zero-padding; the window's leakage spreads a tone
/// over about ±2 bins (`sample_rate / len` Hz each), so keep band edges away from
/// strong tones.
///
/// ```
/// # use modsynth_tests::analysis::band_energy_db;
/// let sine: Vec<f32> = (0..4800).map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 48_000.0).sin()).collect();
/// assert!((band_energy_db(&sine, 48_000.0, 900.0, 1100.0) + 3.01).abs() < 0.05);
/// assert!(band_energy_db(&sine, 48_000.0, 5000.0, 20_000.0) < -100.0);
/// ```
pub fn band_energy_db(signal: &[f32], sample_rate: f64, lo_hz: f64, hi_hz: f64) -> f64 {
    let n = signal.len();
    if n < 2 {
        return -300.0;
    }
    let window = hann(n);
    let w2: f64 = window.iter().map(|w| w * w).sum();
    let spec = spectrum(signal, &window, n, false);
    let bin_hz = sample_rate / n as f64;
    let nyquist_bin = spec.len() - 1;
    let mut power = 0.0;
    for (k, c) in spec.iter().enumerate() {
        let f = k as f64 * bin_hz;
        if f < lo_hz || f > hi_hz {
            continue;
        }
        // One-sided: every bin but DC (and Nyquist for even n) stands for two.
        #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; MSRV 1.85
        let two_sided = if k == 0 || (n % 2 == 0 && k == nyquist_bin) {
            1.0
        } else {
            2.0
        };
        power += two_sided * c.norm_sqr() / (n as f64 * w2);
    }
    10.0 * power.max(1e-30).log10()
}

/// The strongest spectral peak of `signal` that is not a harmonic of `f0`: returns
/// `(frequency_hz, level_db)` with the level relative to the fundamental's peak.
///
/// Blackman-Harris window (sidelobes below -92 dB, so a clean harmonic signal reads
/// about -100 dB or lower), no zero-padding. Bins within 6 bins (`6 * sample_rate /
/// len` Hz) of DC or of any `k * f0` below Nyquist are ignored; of the rest, the
/// largest local maximum wins. Use it for aliasing and spurious tones of oscillators;
/// measure `f0` with [`pitch_hz`] first. Returns `(0.0, -300.0)` if nothing is left.
///
/// ```
/// # use modsynth_tests::analysis::strongest_non_harmonic_db;
/// use std::f64::consts::PI;
/// let x: Vec<f32> = (0..48_000)
///     .map(|n| {
///         let t = n as f64 / 48_000.0;
///         ((2.0 * PI * 500.0 * t).sin() + 0.01 * (2.0 * PI * 7_777.0 * t).sin()) as f32
///     })
///     .collect();
/// let (f, db) = strongest_non_harmonic_db(&x, 48_000.0, 500.0);
/// assert!((f - 7_777.0).abs() < 2.0 && (db + 40.0).abs() < 0.5);
/// ```
pub fn strongest_non_harmonic_db(signal: &[f32], sample_rate: f64, f0: f64) -> (f64, f64) {
    let n = signal.len();
    if n < 8 || f0 <= 0.0 {
        return (0.0, -300.0);
    }
    let spec = spectrum(signal, &blackman_harris(n), n, true);
    let mag: Vec<f64> = spec.iter().map(|c| c.norm()).collect();
    let bin_hz = sample_rate / n as f64;
    let guard = HARMONIC_GUARD_BINS * bin_hz;
    let nyquist = sample_rate / 2.0;
    // The fundamental's level: the largest bin within the guard around f0.
    let lo = ((f0 - guard) / bin_hz).floor().max(0.0) as usize;
    let hi = (((f0 + guard) / bin_hz).ceil() as usize).min(mag.len() - 1);
    let fundamental = mag[lo..=hi].iter().cloned().fold(0.0, f64::max);
    let near_harmonic = |f: f64| {
        let k = (f / f0).round();
        (f - k * f0).abs() <= guard && k * f0 < nyquist + guard
    };
    let mut best: Option<usize> = None;
    for k in 1..mag.len().saturating_sub(1) {
        let f = k as f64 * bin_hz;
        if f <= guard || near_harmonic(f) || mag[k] < mag[k - 1] || mag[k] < mag[k + 1] {
            continue;
        }
        if best.is_none_or(|b| mag[k] > mag[b]) {
            best = Some(k);
        }
    }
    match best {
        Some(k) => (k as f64 * bin_hz, to_db(mag[k]) - to_db(fundamental)),
        None => (0.0, -300.0),
    }
}

/// How long a run of near-silent samples ([`longest_silent_run`] at 1e-6) a steady
/// tone shows with no dropout: one sample, where it crosses zero. A 220 Hz sine at
/// 0.3 puts a sample within 1e-6 of zero about once in 10 seconds; two in a row
/// never happen in a tone above a few hertz, so they are silence.
///
/// ```
/// # use modsynth_tests::analysis::{longest_silent_run, ZERO_CROSSING_SAMPLES};
/// assert_eq!(longest_silent_run(&[0.4, 0.0, -0.4], 1e-6), ZERO_CROSSING_SAMPLES);
/// ```
pub const ZERO_CROSSING_SAMPLES: usize = 1;

/// The length of the longest run of consecutive samples with `|x| <= threshold`
/// (a dropout detector: a gap of zeros in a tone).
///
/// ```
/// # use modsynth_tests::analysis::longest_silent_run;
/// assert_eq!(longest_silent_run(&[1.0, 0.0, 0.0, 0.5, 0.0], 1e-6), 2);
/// ```
pub fn longest_silent_run(signal: &[f32], threshold: f32) -> usize {
    let (mut best, mut run) = (0, 0);
    for &x in signal {
        if x.abs() <= threshold {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// The index of the first sample with `|x| > threshold`, if any (onset of an
/// impulse, gate or tone).
///
/// ```
/// # use modsynth_tests::analysis::first_index_above;
/// assert_eq!(first_index_above(&[0.0, 0.1, -0.9, 1.0], 0.5), Some(2));
/// assert_eq!(first_index_above(&[0.0; 4], 0.5), None);
/// ```
pub fn first_index_above(signal: &[f32], threshold: f32) -> Option<usize> {
    signal.iter().position(|x| x.abs() > threshold)
}

/// A discontinuity detector: the largest `|x[n] - (2 x[n-1] - x[n-2])|`, i.e. how far
/// a sample lands from the straight-line continuation of the two before it (the
/// absolute second difference).
///
/// For a smooth signal of amplitude `A` and frequency `f` this stays below
/// `A * (2 pi f / sample_rate)^2` (about 0.0033 for a full-scale 440 Hz sine at
/// 48 kHz); a jump of height `h` (a splice, a dropped or repeated block, a phase
/// reset) scores about `h`, or about `2 h` where it meets a bend. A naive saw or
/// square wave scores its full step at every cycle, so use it on smooth signals
/// (sines, filtered audio, CV ramps), or compare against the clean signal's score.
/// Returns 0 for fewer than 3 samples. See [`max_step_beyond_slope_at`] for the
/// position.
///
/// ```
/// # use modsynth_tests::analysis::max_step_beyond_slope;
/// assert_eq!(max_step_beyond_slope(&[0.0, 0.1, 0.2, 0.3]), 0.0);
/// assert!((max_step_beyond_slope(&[0.0, 0.1, 0.2, 0.8]) - 0.5).abs() < 1e-6);
/// ```
pub fn max_step_beyond_slope(signal: &[f32]) -> f32 {
    max_step_beyond_slope_at(signal).map_or(0.0, |(_, s)| s)
}

/// [`max_step_beyond_slope`] with the index `n` of the sample where it occurs.
/// `None` for fewer than 3 samples.
pub fn max_step_beyond_slope_at(signal: &[f32]) -> Option<(usize, f32)> {
    signal
        .windows(3)
        .enumerate()
        .map(|(i, w)| (i + 2, (w[2] - (2.0 * w[1] - w[0])).abs()))
        .fold(None, |best: Option<(usize, f32)>, (i, s)| match best {
            Some((_, b)) if b >= s || s.is_nan() => best,
            _ => Some((i, s)),
        })
}

/// Whether any sample is NaN or infinite.
///
/// ```
/// # use modsynth_tests::analysis::has_non_finite;
/// assert!(has_non_finite(&[0.0, f32::NAN]));
/// assert!(!has_non_finite(&[0.0, 1.0]));
/// ```
pub fn has_non_finite(signal: &[f32]) -> bool {
    signal.iter().any(|x| !x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f64 = 48_000.0;

    fn sine(freq: f64, amp: f64, phase: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| (amp * (2.0 * PI * freq * n as f64 / SR + phase).sin()) as f32)
            .collect()
    }

    #[test]
    fn pitch_resolves_440_hz_from_half_a_second_within_a_tenth_of_a_cent() {
        for phase in [0.0, 0.7, 2.1] {
            let f = pitch_hz(&sine(440.0, 0.8, phase, 24_000), SR);
            assert!(cents(f, 440.0).abs() < 0.1, "phase {phase}: {f} Hz");
        }
    }

    #[test]
    fn pitch_resolves_off_bin_frequencies_across_the_range() {
        for freq in [27.5, 110.3, 440.0, 1234.567, 4186.0, 12_000.0] {
            let f = pitch_hz(&sine(freq, 0.5, 0.3, 24_000), SR);
            assert!(cents(f, freq).abs() < 0.1, "{freq} Hz measured as {f} Hz");
        }
    }

    #[test]
    fn pitch_ignores_dc_offset_and_finds_the_fundamental_of_a_saw() {
        let saw: Vec<f32> = (0..24_000)
            .map(|n| 0.3 + ((n as f64 * 330.0 / SR) % 1.0) as f32 - 0.5)
            .collect();
        let f = pitch_hz(&saw, SR);
        assert!(cents(f, 330.0).abs() < 0.5, "{f}");
    }

    #[test]
    fn pitch_of_silence_or_tiny_input_is_zero() {
        assert_eq!(pitch_hz(&[0.0; 1000], SR), 0.0);
        assert_eq!(pitch_hz(&[1.0, -1.0], SR), 0.0);
    }

    #[test]
    fn cents_are_1200_per_octave_and_signed() {
        assert!((cents(440.0, 880.0) + 1200.0).abs() < 1e-9);
        assert!((cents(440.0 * 2f64.powf(1.0 / 1200.0), 440.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rms_and_peak_of_a_sine() {
        let s = sine(1000.0, 0.5, 0.0, 48_000);
        assert!((rms(&s) - 0.5 / 2f64.sqrt()).abs() < 1e-4);
        assert!((peak(&s) - 0.5).abs() < 1e-3);
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(peak(&[-2.0, 1.0]), 2.0);
    }

    #[test]
    fn band_energy_splits_two_tones_into_their_bands() {
        let a = sine(500.0, 1.0, 0.0, 48_000);
        let b = sine(5000.0, 0.1, 0.0, 48_000);
        let x: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert!((band_energy_db(&x, SR, 400.0, 600.0) + 3.01).abs() < 0.05);
        assert!((band_energy_db(&x, SR, 4000.0, 6000.0) + 23.01).abs() < 0.05);
        assert!(
            (band_energy_db(&x, SR, 0.0, SR / 2.0) - 10.0 * (rms(&x) * rms(&x)).log10()).abs()
                < 0.05
        );
        assert!(band_energy_db(&x, SR, 1000.0, 3000.0) < -100.0);
    }

    #[test]
    fn magnitude_spectrum_reads_a_full_scale_sine_as_0_db() {
        let s = magnitude_spectrum_db(&sine(3000.0, 1.0, 0.2, 4800), SR);
        assert!((s.bin_hz - 10.0).abs() < 1e-12);
        assert_eq!(s.db.len(), 2401);
        assert!(s.db[s.bin(3000.0)].abs() < 0.05);
        assert!(s.db[s.bin(6000.0)] < -100.0);
    }

    #[test]
    fn clean_saw_harmonics_are_not_reported_as_non_harmonic() {
        // A band-limited saw: harmonics only, so everything else is window leakage.
        let f0 = 441.3;
        let x: Vec<f32> = (0..48_000)
            .map(|n| {
                let t = n as f64 / SR;
                let mut v = 0.0;
                let mut k = 1.0;
                while k * f0 < SR / 2.0 {
                    v += (2.0 * PI * k * f0 * t).sin() / k;
                    k += 1.0;
                }
                (0.5 * v) as f32
            })
            .collect();
        let (_, db) = strongest_non_harmonic_db(&x, SR, f0);
        assert!(db < -90.0, "leakage at {db} dB");
    }

    #[test]
    fn non_harmonic_finds_an_alias_tone_and_its_level() {
        let f0 = 1000.0;
        let a = sine(f0, 1.0, 0.0, 48_000);
        let alias = sine(3_333.0, 0.001, 0.0, 48_000);
        let x: Vec<f32> = a.iter().zip(&alias).map(|(x, y)| x + y).collect();
        let (f, db) = strongest_non_harmonic_db(&x, SR, f0);
        assert!((f - 3_333.0).abs() < 2.0, "{f}");
        assert!((db + 60.0).abs() < 0.5, "{db}");
    }

    #[test]
    fn longest_silent_run_finds_a_dropout_in_a_tone() {
        let mut s = sine(440.0, 0.5, 0.3, 4800);
        s[1000..1256].fill(0.0);
        let run = longest_silent_run(&s, 1e-4);
        assert!((256..260).contains(&run), "{run}");
        assert_eq!(longest_silent_run(&[], 0.1), 0);
    }

    #[test]
    fn first_index_above_finds_an_impulse_and_uses_absolute_value() {
        let mut s = vec![0.0f32; 100];
        s[37] = -1.0;
        assert_eq!(first_index_above(&s, 0.5), Some(37));
        assert_eq!(first_index_above(&s, 1.0), None);
    }

    #[test]
    fn step_detector_is_quiet_on_a_sine_and_flags_a_splice() {
        let s = sine(440.0, 1.0, 0.0, 4800);
        let clean = max_step_beyond_slope(&s);
        assert!(clean < 0.004, "{clean}");
        // Splice: drop 100 samples (a lost block) at index 2000.
        let mut spliced = s[..2000].to_vec();
        spliced.extend_from_slice(&s[2100..]);
        let (at, step) = max_step_beyond_slope_at(&spliced).unwrap();
        assert!(step > 0.1, "{step}");
        assert!((2000..=2001).contains(&at), "{at}");
        assert_eq!(max_step_beyond_slope(&[1.0, 2.0]), 0.0);
    }

    #[test]
    fn non_finite_samples_are_detected() {
        assert!(has_non_finite(&[0.0, f32::INFINITY]));
        assert!(has_non_finite(&[f32::NEG_INFINITY]));
        assert!(!has_non_finite(&[]));
    }
}
