//! Rows about `modsynthd` and its pool, with no module playing (how latency and load
//! grow with modules is in [`crate::scale`]).
//!
//! - `pool8_ready_ms`: from starting `modsynthd --pool 8` to its "pool ready" line.
//! - `idle_worker_rss_kib` / `idle_worker_private_kib`: resident memory of a warm
//!   spare; RSS counts JACK's shared segment, which every JACK client maps (~100 MB
//!   with jackd2's defaults), the private figure is what the worker itself costs.

use crate::load::{children, memory_kib};
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
    let (mut rss, mut private) = (Vec::new(), Vec::new());
    for (r, p) in children(sup.pid()).into_iter().filter_map(memory_kib) {
        rss.push(r as f64);
        private.push(p as f64);
    }
    Ok(vec![
        Row::new("pool8_ready_ms", "ms", ready),
        Row::new("idle_worker_rss_kib", "KiB", rss),
        Row::new("idle_worker_private_kib", "KiB", private),
    ])
}
