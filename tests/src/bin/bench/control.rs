//! Rows about the control plane under a flood (one `modsynthd`, two `const` modules
//! without standbys):
//!
//! - `set_flood_handled_per_s.udp` / `.tcp`: `/module/set`s to one module sent as
//!   fast as one socket or connection sends them, that `modsynthd` handled (passed
//!   to the worker: applied, or coalesced into a later value of the same
//!   parameter, in the worker or, beyond 128 per period, in the supervisor), per
//!   second from the first send to the `/sync` after the last.
//! - `set_flood_lost_pct.udp`: the share of the UDP flood dropped (the socket's
//!   receive buffer full: counted by the kernel, `kernel_drops`).
//!   TCP loses none (the test `a_flood_over_tcp_loses_nothing...` checks it).
//! - `set_sync_ms.flooded` / `control_latency_samples.flooded`: `/module/set` +
//!   `/sync` round trips over TCP to the *other* module while a UDP flood runs at
//!   the first, and that module's OSC-receipt-to-sample latency (p50, p99 from its
//!   worker): what a performer's knob feels while something else floods.

use crate::Row;
use modsynth_control::client::Client;
use modsynth_control::osc::{message, text};
use modsynth_control::slip;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use rosc::{encoder, OscMessage, OscPacket, OscType};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn set(id: &str, value: f32) -> Vec<u8> {
    encoder::encode(&OscPacket::Message(OscMessage {
        addr: "/module/set".into(),
        args: vec![text(id), text("value"), OscType::Float(value)],
    }))
    .unwrap_or_default()
}

/// Every row of this module.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let n: u64 = if quick { 20_000 } else { 200_000 };
    let sup = Supervisor::start(server, 2)?;
    sup.new_module_without_standby("const", "flooded", &[])?;
    sup.new_module_without_standby("const", "knob", &[])?;
    let tcp = Client::connect(sup.osc)?.with_timeout(Duration::from_secs(30));
    if !tcp.is_tcp() {
        return Err("modsynthd offers no TCP".into());
    }
    let mut rows = Vec::new();

    // UDP: what gets through, and how much is lost.
    let before = sup.status()?;
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    for i in 0..n {
        let _ = udp.send_to(&set("flooded", (i % 8) as f32), sup.osc);
    }
    tcp.sync()?;
    let elapsed = t0.elapsed().as_secs_f64();
    let handled = |s: &modsynth_control::status::StatusReport| {
        s.modules
            .iter()
            .find(|m| m.id == "flooded")
            .map_or(0, |m| m.params.applied + m.params.coalesced)
            // Merged in the supervisor (more than a period's budget): handled too.
            + s.counters.params_held_back
    };
    // The TCP sync may overtake datagrams still in the socket buffer: count
    // until nothing moves any more.
    let mut after = sup.status()?;
    loop {
        tcp.sync()?;
        let again = sup.status()?;
        if again.traffic.queued == 0 && handled(&again) == handled(&after) {
            break;
        }
        after = again;
    }
    let udp_handled = handled(&after) - handled(&before);
    rows.push(Row::summary(
        "set_flood_handled_per_s.udp",
        "1/s",
        udp_handled as f64 / elapsed,
        n as usize,
    ));
    rows.push(Row::summary(
        "set_flood_lost_pct.udp",
        "%",
        100.0 * n.saturating_sub(udp_handled) as f64 / n as f64,
        n as usize,
    ));

    // TCP: lossless, as fast as the core takes it.
    let before = sup.status()?;
    let mut stream = TcpStream::connect(sup.osc).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(slip::encode(&set("flooded", (i % 8) as f32)));
        if out.len() > 64 * 1024 || i + 1 == n {
            stream.write_all(&out).map_err(|e| e.to_string())?;
            out.clear();
        }
    }
    // The stream is read in order: a sync on it comes back after the flood.
    let sync_on_stream = Client::connect(sup.osc)?;
    let mut done = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done && Instant::now() < deadline {
        sync_on_stream.sync()?;
        let s = sup.status()?;
        done = handled(&s) - handled(&before) >= n;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    rows.push(Row::summary(
        "set_flood_handled_per_s.tcp",
        "1/s",
        n as f64 / elapsed,
        n as usize,
    ));

    // A knob while another module is flooded over UDP.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stop, to) = (stop.clone(), sup.osc);
        std::thread::spawn(move || {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let _ = udp.send_to(&set("flooded", (i % 8) as f32), to);
                i = i.wrapping_add(1);
            }
        })
    };
    let rounds = if quick { 50 } else { 500 };
    let mut round_trips = Vec::with_capacity(rounds);
    let mut result = Ok(());
    for i in 0..rounds {
        let t = Instant::now();
        let msg = message(
            "/module/set",
            vec![text("knob"), text("value"), OscType::Float((i % 10) as f32)],
        );
        if let Err(e) = tcp.call_then_sync(msg) {
            result = Err(e);
            break;
        }
        round_trips.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();
    result?;
    rows.push(Row::new("set_sync_ms.flooded", "ms", round_trips));
    // Over TCP: a UDP /status could still meet the tail of the flood.
    let reply = tcp.query(message("/status", vec![]), "/status.reply")?;
    let Some(OscType::String(json)) = reply.args.first() else {
        return Err("an empty /status.reply".into());
    };
    let status: modsynth_control::status::StatusReport =
        serde_json::from_str(json).map_err(|e| e.to_string())?;
    let knob = status
        .modules
        .into_iter()
        .find(|m| m.id == "knob")
        .ok_or("knob is missing from /status")?;
    let mut latency = Row::summary(
        "control_latency_samples.flooded",
        "samples",
        knob.latency_samples[0] as f64,
        knob.params.applied as usize,
    );
    latency.p99 = knob.latency_samples[2] as f64;
    rows.push(latency);
    let _ = tcp.call(message("/module/free", vec![text("knob")]));
    Ok(rows)
}
