//! Rows about `modsynthd` itself dying under a playing set (issue 11): a VCO -> VCF
//! -> VCA chain with standbys plays into a capture client while `modsynthd` is
//! SIGKILLed and a new one of the same name started, over and over.
//!
//! - `supervisor_restart_to_readopted_ms`: from starting the new `modsynthd` to its
//!   "pool ready" line, by when it has taken every worker back and rebuilt the set.
//! - `supervisor_kill_gap_frames`: the longest run of silent frames at the capture
//!   in a second around each kill and restart (target 0).
//! - `supervisor_kill_dropped_frames`: frames the server skipped in that second
//!   (what jackd2 drops when a client dies; not silence at the capture).

use crate::Row;
use modsynth_tests::analysis::longest_silent_run;
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::{unique_name, Supervisor};
use std::time::{Duration, Instant};

/// Every row of this module.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let name = unique_name();
    let extra = ["--spare-grace", "30"];
    let mut sup = Supervisor::start_named(server, &name, 2, &extra)?;
    let capture = Capture::start(server, 1)?;
    sup.new_module("vco", "osc1", &[("freq", 440.0), ("gain", 0.5)])?;
    sup.new_module("vcf", "filt1", &[("cutoff", 8000.0)])?;
    sup.new_module("vca", "amp1", &[("gain", 1.0)])?;
    sup.connect("osc1:out", "filt1:in")?;
    sup.connect("filt1:out", "amp1:in")?;
    sup.connect("amp1:out", &capture.port(0))?;
    for id in ["osc1", "filt1", "amp1"] {
        sup.wait_for_module(id, Duration::from_secs(15), |m| m.standby_worker.is_some());
    }
    let (mut ready_ms, mut gaps, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..if quick { 3 } else { 20 } {
        let recorded = std::thread::scope(|s| -> Result<_, String> {
            let rec = s.spawn(|| capture.record(capture.sample_rate() as usize));
            std::thread::sleep(Duration::from_millis(200));
            sup.sigkill()?;
            let t0 = Instant::now();
            sup = Supervisor::start_named(server, &name, 2, &extra)?;
            ready_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            rec.join()
                .map_err(|_| "the recording thread panicked".to_string())?
        })?;
        gaps.push(longest_silent_run(&recorded.channels[0], 1e-6) as f64);
        dropped.push(recorded.dropped_frames as f64);
    }
    let mut sup = sup;
    sup.stop()?;
    Ok(vec![
        Row::new("supervisor_restart_to_readopted_ms", "ms", ready_ms),
        Row::new("supervisor_kill_gap_frames", "frames", gaps)
            .note("longest silence at the capture around a modsynthd SIGKILL + restart"),
        Row::new("supervisor_kill_dropped_frames", "frames", dropped),
    ])
}
