//! The scale curve: the same measurements with 0, 8, 32 and 64 VCO modules playing
//! (0 and 8 in a quick run), each with its hot standby, so two workers per module,
//! on one `modsynthd` with the default pool of 8. The design wants create and
//! control latency flat from 0 to 64 modules.
//!
//! - `create_ms.running_<n>`: `/module/new` -> `/done` of an extra (probe) module,
//!   in steady state: before each create the pool is full, every standby ready, and
//!   the system has been left alone for 300 ms (as between a performer's commands);
//!   each probe is freed again. Compared with the cold JACK client open of the run.
//! - `set_sync_ms.running_<n>`: `/module/set` + `/sync` round trips in a burst, to
//!   one more VCO created for it (and freed after).
//! - `control_latency_samples.running_<n>`: after that burst, OSC receipt -> the
//!   sample the change landed on, p50 and p99 from that VCO's worker (exact to the
//!   sample; `n` = changes applied). Target: p99 <= one period.
//! - `cpu_pct.running_<n>`: CPU of `modsynthd` and all its workers (spares
//!   included), in % of one core, over 3 s; `xruns.running_<n>`: xruns in the same
//!   window.
//! - `create_p99_vs_idle.running_<n>`: the create p99 at that level over the one
//!   with none playing (issue 11's target: at most 1.2 at 32 modules).
//! - `scale.modules_reached`: only when a level could not be reached: how many
//!   modules played, and the error that stopped the next one (jackd2 1.9.21 as built
//!   by Debian accepts 253 external clients; 64 modules with standbys and the pool
//!   are about 140).

use crate::load::{family, Load};
use crate::settle::wait_settled;
use crate::Row;
use modsynth_control::client::Client;
use modsynth_control::osc::{message, text};
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use rosc::OscType;
use std::time::{Duration, Instant};

/// Creates measured per level in a full run. With 30 the p99 was simply the slowest
/// create, and one create that the scheduler delayed (24 ms once, 3-6 ms in most
/// runs) decided the row; 100 make it the second slowest.
const CREATES: usize = 100;

/// Quiet time before each measured create (see the module docs).
const SETTLE: Duration = Duration::from_millis(300);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every row of the scale curve, at `levels` (default: 0, 8, 32 and 64 modules;
/// 0 and 8 in a quick run).
pub fn rows(server: &JackServer, quick: bool, levels: &[usize]) -> Result<Vec<Row>, String> {
    let levels: &[usize] = match (levels, quick) {
        ([], true) => &[0, 8],
        ([], false) => &[0, 8, 32, 64],
        (chosen, _) => chosen,
    };
    // 64 background modules plus the probes measured at that level: above the
    // default --max-modules (64).
    let sup = Supervisor::start_with(server, 8, &["--max-modules", "80"])?;
    let client = sup.client().with_timeout(Duration::from_secs(10));
    let mut rows = Vec::new();
    let mut running = 0usize;
    for &level in levels {
        if let Err(e) = grow(&sup, &mut running, level) {
            let log = server.log_tail();
            let last_log = log.lines().rev().find(|l| !l.trim().is_empty());
            rows.push(
                Row::summary("scale.modules_reached", "modules", running as f64, 1).note(format!(
                    "level {level} not reached: {e}; jackd's last line: {}",
                    last_log.unwrap_or("(none)")
                )),
            );
            break;
        }
        rows.extend(level_rows(server, &sup, &client, level, quick)?);
    }
    rows.extend(create_vs_idle(&rows));
    Ok(rows)
}

/// `create_p99_vs_idle.running_<n>` for every level above 0 measured beside 0.
fn create_vs_idle(rows: &[Row]) -> Vec<Row> {
    let Some(idle) = rows.iter().find(|r| r.name == "create_ms.running_0") else {
        return Vec::new();
    };
    rows.iter()
        .filter(|r| r.name.starts_with("create_ms.running_") && r.name != idle.name)
        .map(|r| {
            let level = r.name.trim_start_matches("create_ms.running_");
            Row::summary(
                format!("create_p99_vs_idle.running_{level}"),
                "x",
                r.p99 / idle.p99,
                r.n,
            )
            .note(format!(
                "create p99 {:.2} ms over {:.2} ms with none playing; target at 32: <= 1.2",
                r.p99, idle.p99
            ))
        })
        .collect()
}

/// Adds background VCOs (`bg<k>`) until `level` play, then waits until every
/// standby is ready and the pool full again.
fn grow(sup: &Supervisor, running: &mut usize, level: usize) -> Result<(), String> {
    while *running < level {
        let k = *running;
        sup.new_module("vco", &format!("bg{k}"), &[("freq", 110.0 + k as f32)])
            .map_err(|e| format!("creating module {}: {e}", k + 1))?;
        *running += 1;
    }
    wait_settled(sup).map(|_| ())
}

/// The rows of one level (`level` background modules playing and settled).
fn level_rows(
    server: &JackServer,
    sup: &Supervisor,
    client: &Client,
    level: usize,
    quick: bool,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();

    let mut creates = Vec::new();
    for i in 0..if quick { 10 } else { CREATES } {
        wait_settled(sup)?;
        std::thread::sleep(SETTLE);
        let id = format!("probe{level}x{i}");
        let t0 = Instant::now();
        client.call(message("/module/new", vec![text("lfo"), text(&id)]))?;
        creates.push(ms(t0.elapsed()));
        client.call(message("/module/free", vec![text(&id)]))?;
    }
    rows.push(Row::new(
        format!("create_ms.running_{level}"),
        "ms",
        creates,
    ));

    let ctl = format!("ctl{level}");
    sup.new_module("vco", &ctl, &[("freq", 330.0)])?;
    wait_settled(sup)?;
    let mut sets = Vec::new();
    for i in 0..if quick { 100 } else { 500 } {
        let value = OscType::Float(300.0 + (i % 50) as f32);
        let msg = message("/module/set", vec![text(&ctl), text("freq"), value]);
        let t0 = Instant::now();
        client.call_then_sync(msg)?;
        sets.push(ms(t0.elapsed()));
    }
    rows.push(Row::new(format!("set_sync_ms.running_{level}"), "ms", sets));
    let m = sup
        .module_status(&ctl)
        .ok_or_else(|| format!("{ctl} is missing from /status"))?;
    let mut latency = Row::summary(
        format!("control_latency_samples.running_{level}"),
        "samples",
        m.latency_samples[0] as f64,
        m.params.applied as usize,
    );
    latency.p99 = m.latency_samples[2] as f64;
    rows.push(latency);
    client.call(message("/module/free", vec![text(&ctl)]))?;

    let report = wait_settled(sup)?;
    let load = Load::measure(server, &family(sup.pid()))?;
    rows.push(
        Row::summary(
            format!("cpu_pct.running_{level}"),
            "% core",
            load.cpu_pct,
            1,
        )
        .note(format!("modsynthd and its {} workers", report.workers)),
    );
    rows.push(Row::summary(
        format!("xruns.running_{level}"),
        "xruns",
        load.xruns as f64,
        1,
    ));
    Ok(rows)
}
