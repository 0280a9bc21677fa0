//! Rows about crashes: SIGKILL of a playing VCO's primary, many times over.
//!
//! - `failover.silent_frames`: frames of silence at the module's output around the
//!   kill (what modsynth's failover costs).
//! - `failover.server_dropped_frames`: frames the JACK server skipped around the kill
//!   (jackd2 skips a cycle or two when a client dies in its graph; a listener misses
//!   those too).
//! - `failover.zero_gap_share_pct`: share of kills with no silent frame.
//! - `failover.standby_rebuilt_ms`: from the kill until the module has a new standby.

use crate::Row;
use modsynth_control::osc::{message, text};
use modsynth_control::status::{ModuleStatus, StatusReport};
use modsynth_tests::analysis::longest_silent_run;
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use rosc::OscType;
use std::time::{Duration, Instant};

fn module(sup: &Supervisor, id: &str) -> Option<ModuleStatus> {
    let reply = sup
        .client()
        .query(message("/status", vec![]), "/status.reply")
        .ok()?;
    let OscType::String(json) = reply.args.first()? else {
        return None;
    };
    let report: StatusReport = serde_json::from_str(json).ok()?;
    report.modules.into_iter().find(|m| m.id == id)
}

fn wait_for(
    sup: &Supervisor,
    id: &str,
    ready: impl Fn(&ModuleStatus) -> bool,
) -> Result<ModuleStatus, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = module(sup, id).filter(|m| ready(m)) {
            return Ok(m);
        }
        if Instant::now() > deadline {
            return Err(format!("module {id} did not get ready within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every failover row.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let kills = if quick { 10 } else { 100 };
    let sup = Supervisor::start(server, 4)?;
    sup.new_module("vco", "victim", &[("freq", 440.0)])?;
    let capture = Capture::start(server, 1)?;
    sup.client().call(message(
        "/patch/connect",
        vec![text("victim:out"), text(&capture.port(0))],
    ))?;
    let (mut silent, mut dropped, mut rebuilt) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..kills {
        let before = wait_for(&sup, "victim", |m| !m.standby_client.is_empty())?;
        let pid = nix::unistd::Pid::from_raw(before.pid as i32);
        let rec = std::thread::scope(|s| {
            let rec = s.spawn(|| capture.record(9600));
            std::thread::sleep(Duration::from_millis(80));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let killed_at = Instant::now();
            wait_for(&sup, "victim", |m| {
                m.pid != before.pid && !m.standby_client.is_empty()
            })?;
            rebuilt.push(killed_at.elapsed().as_secs_f64() * 1e3);
            rec.join()
                .map_err(|_| "recording thread panicked".to_string())?
        })?;
        silent.push(longest_silent_run(&rec.channels[0], 1e-6) as f64);
        dropped.push(rec.dropped_frames as f64);
    }
    let zero = silent.iter().filter(|&&g| g == 0.0).count() as f64 * 100.0 / kills as f64;
    Ok(vec![
        Row::new("failover.silent_frames", "frames", silent),
        Row::new("failover.server_dropped_frames", "frames", dropped),
        Row::new("failover.zero_gap_share_pct", "%", vec![zero]),
        Row::new("failover.standby_rebuilt_ms", "ms", rebuilt),
    ])
}
