//! Waiting for a whole `modsynthd` to reach a state, by polling `/status`.
//!
//! [`Supervisor::wait_for_module`] watches one module; the bench often needs every
//! module at once (all recovered after a round of kills, all standbys ready before a
//! measurement), and an error rather than a panic when it does not happen.

use modsynth_control::status::{ModuleRole, ModuleStatus, StatusReport};
use modsynth_tests::supervisor::Supervisor;
use std::time::{Duration, Instant};

/// How long the bench waits for the system to settle before giving up.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `/status` (every 10 ms) until `ready` holds, up to `within`; the error says
/// `what` was awaited.
pub fn wait_status(
    sup: &Supervisor,
    within: Duration,
    what: &str,
    ready: impl Fn(&StatusReport) -> bool,
) -> Result<StatusReport, String> {
    let deadline = Instant::now() + within;
    loop {
        let report = sup.status();
        if let Ok(r) = &report {
            if ready(r) {
                return report;
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not happen within {within:?}; last /status: {}",
                match report {
                    Ok(r) => summary(&r),
                    Err(e) => e,
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether module `m` plays in a worker of its own (not in a standby host's seat,
/// waiting to be handed back), with its hot standby ready unless it has none.
pub fn plays_protected(m: &ModuleStatus) -> bool {
    m.role == ModuleRole::Primary
        && m.pid != 0
        && !m.in_seat
        && (!m.standby || m.standby_worker.is_some())
}

/// Every module plays with its standby ready, and the pool is full: nothing is being
/// spawned or assigned in the background.
pub fn settled(r: &StatusReport) -> bool {
    r.spare_ready >= r.pool_size && r.modules.iter().all(plays_protected)
}

/// Waits (up to [`PATIENCE`]) until the system is [`settled`].
pub fn wait_settled(sup: &Supervisor) -> Result<StatusReport, String> {
    wait_status(
        sup,
        PATIENCE,
        "settling (pool full, standbys ready)",
        settled,
    )
}

/// A one-line summary of a status report, for error messages.
fn summary(r: &StatusReport) -> String {
    let unprotected: Vec<String> = r
        .modules
        .iter()
        .filter(|m| !plays_protected(m))
        .map(|m| match &m.standby_worker {
            Some(s) => format!("{} ({}, standby pid {})", m.id, m.role, s.pid),
            None => format!("{} ({}, no standby)", m.id, m.role),
        })
        .collect();
    format!(
        "pool {}/{}, {} workers, {} modules, not ready: [{}]",
        r.spare_ready,
        r.pool_size,
        r.workers,
        r.modules.len(),
        unprotected.join(", ")
    )
}
