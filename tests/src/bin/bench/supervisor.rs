//! Rows about `modsynthd` and its pool, with no module playing (how latency and load
//! grow with modules is in [`crate::scale`]).
//!
//! - `pool8_ready_ms`: from starting `modsynthd --pool 8` to its "pool ready" line.
//! - `idle_worker_rss_kib` / `idle_worker_private_kib`: resident memory of a warm
//!   spare; RSS counts JACK's shared segment, which every JACK client maps (~100 MB
//!   with jackd2's defaults), the private figure is what the worker itself costs.
//!   `idle_worker_rss_outside_jack_shm_kib` is the RSS without that segment (the
//!   worker's code, libraries and private memory).
//! - `jack_simple_client_rss_kib` / `..._outside_jack_shm_kib`: the same for jackd2's
//!   own example client, started on the same server in the same run: the floor of any
//!   JACK client, which the worker rows are compared against.

use crate::load::{children, memory_kib, Memory};
use crate::peers::{start_simple_clients, stop_all};
use crate::settle::wait_settled;
use crate::Row;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use std::time::Instant;

/// Every row of this module.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let mut ready = Vec::new();
    for _ in 0..if quick { 2 } else { 5 } {
        let t0 = Instant::now();
        let sup = Supervisor::start(server, 8)?;
        ready.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(sup);
    }

    let sup = Supervisor::start(server, 8)?;
    wait_settled(&sup)?;
    let workers: Vec<Memory> = children(sup.pid())
        .into_iter()
        .filter_map(memory_kib)
        .collect();
    let simple = jack_simple_client_memory(server)?;
    let column = |m: &[Memory], f: fn(&Memory) -> u64| m.iter().map(|m| f(m) as f64).collect();
    let rss = |m: &Memory| m.rss;
    let outside = |m: &Memory| m.rss - m.rss_jack_shm;
    let simple_rss = Row::new("jack_simple_client_rss_kib", "KiB", column(&[simple], rss));
    let simple_outside = Row::new(
        "jack_simple_client_rss_outside_jack_shm_kib",
        "KiB",
        column(&[simple], outside),
    );
    let worker_rss = Row::new("idle_worker_rss_kib", "KiB", column(&workers, rss));
    let worker_outside = Row::new(
        "idle_worker_rss_outside_jack_shm_kib",
        "KiB",
        column(&workers, outside),
    );
    Ok(vec![
        Row::new("pool8_ready_ms", "ms", ready),
        worker_rss.compared_with(&simple_rss),
        worker_outside.compared_with(&simple_outside),
        Row::new(
            "idle_worker_private_kib",
            "KiB",
            column(&workers, |m| m.private),
        ),
        simple_rss,
        simple_outside,
    ])
}

/// The memory of jackd2's `jack_simple_client` once it plays (it is stopped after).
fn jack_simple_client_memory(server: &JackServer) -> Result<Memory, String> {
    let mut children = start_simple_clients(server, 1)?;
    let memory = memory_kib(children[0].id());
    stop_all(&mut children);
    memory.ok_or_else(|| "jack_simple_client exited before it was measured".to_string())
}
