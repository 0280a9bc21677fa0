//! Rows about what many kill cycles leave behind in `/dev/shm` (target: 0 leaked
//! segments over 1000 kill cycles).
//!
//! One `modsynthd` (pool of 8, `--crash-loop` off) plays 8 modules of different
//! types, each with a hot standby. A round SIGKILLs every module's primary, one
//! every [`KILL_SPACING`], then waits until every module plays again from a new
//! primary with a ready standby (plus [`AFTER_TAKEOVER`], so no kill lands right
//! after a takeover, which would count as a crash loop). 125 rounds make 1000 kill
//! cycles (50 in a quick run).
//!
//! Why not all at once: jackd2 1.9.21 stalls about 0.5 s (its client timeout) for
//! every further client that dies while it still handles another death, and every
//! client of the server waits (8 plain `jack_metro` clients SIGKILLed together: the
//! next `jack_lsp` takes 4 s; 20 ms apart: 30 ms). A modsynth death also changes
//! the graph (ports renamed, a standby's ports registered and connected), so here
//! kills closer than ~120 ms apart stall: 8 at once made a round take 4 s (125
//! rounds: 8 minutes of jackd's timeouts), 60 ms apart 3.4 s, 120 ms apart 0.9 s.
//!
//! - `failover.kill_round_ms`: one round, from the first kill to every module
//!   recovered with a new standby.
//! - `failover.leaked_segments_after_kills`: `/dev/shm` entries of the instance
//!   (`<instance>-*`) that are not a module's state segment
//!   (`<instance>-<id>-state`, exactly one per module); a missing state segment is
//!   noted.
//! - `failover.leaked_segments_after_stop`: entries of the instance left once
//!   `modsynthd` has stopped (SIGTERM): must be 0.

use crate::failover::{AFTER_TAKEOVER, NO_CRASH_LOOP};
use crate::settle::{plays_protected, wait_settled, wait_status, PATIENCE};
use crate::Row;
use modsynth_model::catalog;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::{segments_of, Supervisor};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Modules killed per round (and the pool size, so a round's new standbys are ready).
const MODULES: usize = 8;

/// Time between two kills of a round (see the module docs).
const KILL_SPACING: Duration = Duration::from_millis(150);

/// Every leak row.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let cycles = if quick { 50 } else { 1000 };
    let mut sup = Supervisor::start_with(server, MODULES, &["--crash-loop", NO_CRASH_LOOP])?;
    let specs = catalog::modules().iter().cycle().take(MODULES);
    let ids: Vec<String> = specs
        .enumerate()
        .map(|(i, spec)| {
            let id = format!("{}{i}", spec.name);
            sup.new_module(spec.name, &id, &[]).map(|_| id)
        })
        .collect::<Result<_, _>>()?;
    wait_settled(&sup)?;

    let mut killed = 0;
    let mut rounds = Vec::new();
    while killed < cycles {
        let report = sup.status()?;
        let victims: Vec<u32> = report
            .modules
            .iter()
            .take(cycles - killed)
            .map(|m| m.pid)
            .collect();
        let t0 = Instant::now();
        for (k, &pid) in victims.iter().enumerate() {
            if k > 0 {
                std::thread::sleep(KILL_SPACING);
            }
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL)
                .map_err(|e| format!("kill {pid}: {e}"))?;
        }
        killed += victims.len();
        wait_status(&sup, PATIENCE, "every module's recovery", |r| {
            r.modules
                .iter()
                .all(|m| plays_protected(m) && !victims.contains(&m.pid))
        })?;
        rounds.push(t0.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(AFTER_TAKEOVER);
    }

    let failovers = sup.status()?.counters.failovers;
    let states: Vec<String> = ids
        .iter()
        .map(|id| format!("{}-{id}-state", sup.name))
        .collect();
    let segments = segments_of(&sup.name);
    let leaked = segments.iter().filter(|s| !states.contains(s)).count();
    let missing: Vec<&String> = states.iter().filter(|s| !segments.contains(s)).collect();
    let name = sup.name.clone();
    sup.stop()?;
    let after_stop = segments_of(&name).len();

    let mut notes = Vec::new();
    if failovers != killed as u64 {
        notes.push(format!(
            "the supervisor counted {failovers} failovers for {killed} kills"
        ));
    }
    if !missing.is_empty() {
        notes.push(format!("state segments missing: {missing:?}"));
    }
    Ok(vec![
        Row::new("failover.kill_round_ms", "ms", rounds).note(format!(
            "{MODULES} modules of different types, their primaries killed {} ms apart per round",
            KILL_SPACING.as_millis()
        )),
        Row::summary(
            "failover.leaked_segments_after_kills",
            "segments",
            leaked as f64,
            killed,
        )
        .note(notes.join("; ")),
        Row::summary(
            "failover.leaked_segments_after_stop",
            "segments",
            after_stop as f64,
            1,
        ),
    ])
}
