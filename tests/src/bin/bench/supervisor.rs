//! Rows that run the whole system: `modsynthd` with its pool, driven over OSC.
//!
//! - `pool8_ready_ms`: from starting `modsynthd --pool 8` to its "pool ready" line.
//! - `create_ms.running_<n>`: `/module/new` -> `/done` with `n` modules already
//!   playing, in steady state: before each create the pool is full and the system
//!   has been left alone for 300 ms (as between a performer's commands); each probe
//!   module is freed again. Compared with the cold JACK client open of the same run.
//! - `set_sync_ms`: `/module/set` + `/sync` round trip.
//! - `control_latency_samples`: OSC receipt -> the sample the change landed on, from
//!   the worker's histogram (16-sample buckets, upper edges).
//! - `idle_worker_rss_kib` / `idle_worker_private_kib`: resident memory of a warm
//!   spare; RSS counts JACK's shared segment, which every JACK client maps (~100 MB
//!   with jackd2's defaults), the private figure is what the worker itself costs.

use crate::Row;
use modsynth_control::client::Client;
use modsynth_control::osc::{message, text};
use modsynth_control::status::StatusReport;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use rosc::OscType;
use std::time::{Duration, Instant};

fn status(client: &Client) -> Result<StatusReport, String> {
    let reply = client.query(message("/status", vec![]), "/status.reply")?;
    match reply.args.first() {
        Some(OscType::String(json)) => serde_json::from_str(json).map_err(|e| e.to_string()),
        _ => Err("empty /status.reply".into()),
    }
}

/// Waits until the pool is full again (spares are rebuilt in the background).
fn wait_for_full_pool(client: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(client)?;
        if s.spare_ready >= s.pool_size {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pool stayed at {}/{} for 20 s",
                s.spare_ready, s.pool_size
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Quiet time before each measured create (see the module docs).
const SETTLE: Duration = Duration::from_millis(300);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every row of this module.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();

    let mut ready = Vec::new();
    for _ in 0..if quick { 2 } else { 5 } {
        let t0 = Instant::now();
        let sup = Supervisor::start(server, 8)?;
        ready.push(ms(t0.elapsed()));
        drop(sup);
    }
    rows.push(Row::new("pool8_ready_ms", "ms", ready));

    let sup = Supervisor::start(server, 8)?;
    let client = sup.client().with_timeout(Duration::from_secs(10));
    let creates = if quick { 10 } else { 40 };
    let mut running = 0usize;
    for target in [0usize, 8, 32] {
        while running < target {
            sup.new_module(
                "vco",
                &format!("bg{running}"),
                &[("freq", 110.0 + running as f32)],
            )?;
            running += 1;
        }
        let mut samples = Vec::new();
        for i in 0..creates {
            wait_for_full_pool(&client)?;
            std::thread::sleep(SETTLE);
            let id = format!("probe{target}x{i}");
            let t0 = Instant::now();
            client.call(message("/module/new", vec![text("lfo"), text(&id)]))?;
            samples.push(ms(t0.elapsed()));
            client.call(message("/module/free", vec![text(&id)]))?;
        }
        rows.push(Row::new(
            format!("create_ms.running_{target}"),
            "ms",
            samples,
        ));
    }

    let sets = if quick { 100 } else { 1000 };
    let mut samples = Vec::new();
    for i in 0..sets {
        let msg = message(
            "/module/set",
            vec![
                text("bg0"),
                text("freq"),
                OscType::Float(100.0 + (i % 50) as f32),
            ],
        );
        let t0 = Instant::now();
        client.call_then_sync(msg)?;
        samples.push(ms(t0.elapsed()));
    }
    rows.push(Row::new("set_sync_ms", "ms", samples));

    let report = status(&client)?;
    if let Some(m) = report.modules.iter().find(|m| m.id == "bg0") {
        let mut row = Row::new("control_latency_samples", "samples", vec![]);
        row.n = m.params_applied as usize;
        row.median = m.latency_samples[0] as f64;
        row.p99 = m.latency_samples[2] as f64;
        rows.push(row);
    }

    let playing: Vec<u32> = report.modules.iter().map(|m| m.pid).collect();
    let (mut rss, mut private) = (Vec::new(), Vec::new());
    for pid in children(sup.pid())
        .into_iter()
        .filter(|p| !playing.contains(p))
    {
        if let Some((r, p)) = memory_kib(pid) {
            rss.push(r as f64);
            private.push(p as f64);
        }
    }
    rows.push(Row::new("idle_worker_rss_kib", "KiB", rss));
    rows.push(Row::new("idle_worker_private_kib", "KiB", private));
    Ok(rows)
}

/// Pids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(parent)
        })
        .collect()
}

/// (RSS, private = Private_Clean + Private_Dirty) in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((
        field("Rss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    ))
}
