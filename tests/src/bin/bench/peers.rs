//! Rows that compare modsynth with what a user would pick instead, on the same JACK
//! server in the same run (`--peers`):
//!
//! - SuperCollider's `scsynth`: `/s_new` -> `/n_go` and `/n_set` + `/sync` round
//!   trips, CPU of 16 and 64 sine synths, and the time from a SIGKILL to sound again
//!   (restart, load the SynthDef, start the synth).
//! - modsynth: CPU of 16 and 64 VCO modules (all processes: supervisor and workers).
//! - plain JACK clients (`jack_simple_client`, a C sine client from jackd2's
//!   examples): CPU of 8, 32 and 64 of them, the floor any one-process-per-voice
//!   design pays.
//!
//! CPU is the processes' user + system time over a 3 s window, in % of one core;
//! xruns are counted by a capture client during the same window.

use crate::Row;
use modsynth_control::osc::{message, text};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use rosc::{OscMessage, OscPacket, OscType};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How long CPU and xruns are measured for.
const WINDOW: Duration = Duration::from_secs(3);

/// A SynthDef (SCgf version 2) named `sine`: `Out.ar(0, SinOsc.ar(freq) * amp)` with
/// controls `freq` (440) and `amp` (0.1). Written by hand so no sclang is needed.
pub fn sine_synthdef() -> Vec<u8> {
    fn pstring(out: &mut Vec<u8>, s: &str) {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    fn i32s(out: &mut Vec<u8>, values: &[i32]) {
        for v in values {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    /// A UGen: name, rate (1 control, 2 audio), inputs as (ugen or -1 for a
    /// constant, output or constant index), output rates, special index.
    fn ugen(
        out: &mut Vec<u8>,
        name: &str,
        rate: u8,
        inputs: &[(i32, i32)],
        outputs: &[u8],
        special: i16,
    ) {
        pstring(out, name);
        out.push(rate);
        i32s(out, &[inputs.len() as i32, outputs.len() as i32]);
        out.extend_from_slice(&special.to_be_bytes());
        for &(a, b) in inputs {
            i32s(out, &[a, b]);
        }
        out.extend_from_slice(outputs);
    }
    let mut d = b"SCgf".to_vec();
    i32s(&mut d, &[2]);
    d.extend_from_slice(&1i16.to_be_bytes());
    pstring(&mut d, "sine");
    i32s(&mut d, &[1]); // constants: 0.0 (phase, and bus 0)
    d.extend_from_slice(&0f32.to_be_bytes());
    i32s(&mut d, &[2]);
    d.extend_from_slice(&440f32.to_be_bytes());
    d.extend_from_slice(&0.1f32.to_be_bytes());
    i32s(&mut d, &[2]);
    pstring(&mut d, "freq");
    i32s(&mut d, &[0]);
    pstring(&mut d, "amp");
    i32s(&mut d, &[1]);
    i32s(&mut d, &[4]);
    ugen(&mut d, "Control", 1, &[], &[1, 1], 0);
    ugen(&mut d, "SinOsc", 2, &[(0, 0), (-1, 0)], &[2], 0);
    ugen(&mut d, "BinaryOpUGen", 2, &[(1, 0), (0, 1)], &[2], 2); // 2 = multiply
    ugen(&mut d, "Out", 2, &[(-1, 0), (2, 0)], &[], 0);
    d.extend_from_slice(&0i16.to_be_bytes()); // no variants
    d
}

/// A running scsynth on the bench's JACK server, killed when dropped.
struct Scsynth {
    child: Child,
    osc: SocketAddr,
    socket: UdpSocket,
}

impl Scsynth {
    fn start(server: &JackServer) -> Result<Scsynth, String> {
        let port = free_udp_port()?;
        let child = server
            .command("scsynth")
            .args(["-u", &port.to_string(), "-i", "0", "-o", "2", "-m", "65536"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start scsynth ({e}); `scripts/bench --peers` installs supercollider-server"))?;
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let sc = Scsynth {
            child,
            osc: SocketAddr::from(([127, 0, 0, 1], port)),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while sc
            .request(
                message("/status", vec![]),
                "/status.reply",
                Duration::from_millis(200),
            )
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("scsynth did not answer /status within 15 s".into());
            }
        }
        sc.request(
            message("/notify", vec![OscType::Int(1)]),
            "/done",
            Duration::from_secs(2),
        )?;
        sc.request(
            message("/d_recv", vec![OscType::Blob(sine_synthdef())]),
            "/done",
            Duration::from_secs(5),
        )?;
        Ok(sc)
    }

    fn send(&self, msg: OscMessage) -> Result<(), String> {
        let bytes =
            rosc::encoder::encode(&OscPacket::Message(msg)).map_err(|e| format!("{e:?}"))?;
        self.socket
            .send_to(&bytes, self.osc)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Sends `msg` and waits for a message at `reply`.
    fn request(
        &self,
        msg: OscMessage,
        reply: &str,
        timeout: Duration,
    ) -> Result<OscMessage, String> {
        self.send(msg)?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) {
                    if m.addr == reply {
                        return Ok(m);
                    }
                }
            }
        }
        Err(format!("scsynth did not answer {reply}"))
    }

    fn s_new(&self, node: i32, freq: f32) -> Result<(), String> {
        let msg = message(
            "/s_new",
            vec![
                text("sine"),
                OscType::Int(node),
                OscType::Int(0),
                OscType::Int(0),
                text("freq"),
                OscType::Float(freq),
            ],
        );
        self.request(msg, "/n_go", Duration::from_secs(2))
            .map(|_| ())
    }
}

impl Scsynth {
    /// SIGKILLs it: a crash.
    fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Scsynth {
    fn drop(&mut self) {
        stop(&mut self.child);
        // scsynth leaves its shared memory (named after its port) behind when it is
        // killed, and even on SIGTERM; it is ours to remove once it is gone.
        let _ = nix::sys::mman::shm_unlink(
            format!("/SuperColliderServer_{}", self.osc.port()).as_str(),
        );
    }
}

/// SIGTERM, then up to 5 s for a clean exit (so it frees its shared memory), then
/// SIGKILL.
fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn free_udp_port() -> Result<u16, String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.port())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU ticks (user + system) of a process; 0 if it is gone.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// `pid` and all its descendants.
fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let ppid = std::fs::read_to_string(format!("/proc/{child}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit(')')
                            .next()?
                            .split_whitespace()
                            .nth(1)?
                            .parse::<u32>()
                            .ok()
                    });
                if ppid == Some(parent) {
                    all.push(child);
                }
            }
        }
        i += 1;
    }
    all
}

/// CPU % (of one core) of `pids` over [`WINDOW`], and xruns a capture client counted.
fn cpu_and_xruns(server: &JackServer, pids: &[u32]) -> Result<(f64, u64), String> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let capture = Capture::start(server, 1)?;
    let xruns0 = capture.xruns();
    let t0: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    let t1: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
    let secs = start.elapsed().as_secs_f64();
    Ok((
        100.0 * (t1 - t0) as f64 / hz / secs,
        capture.xruns() - xruns0,
    ))
}

fn single(name: String, unit: &'static str, value: f64) -> Row {
    Row::new(name, unit, vec![value])
}

/// Every peer row.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let n = if quick { 10 } else { 40 };

    // scsynth latencies.
    let sc = Scsynth::start(server)?;
    let mut create = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        sc.s_new(1000 + i, 220.0)?;
        create.push(ms(t0.elapsed()));
        sc.send(message("/n_free", vec![OscType::Int(1000 + i)]))?;
    }
    rows.push(Row::new("peer.scsynth_s_new_n_go_ms", "ms", create));
    sc.s_new(999, 220.0)?;
    let mut sets = Vec::new();
    for i in 0..n * 5 {
        let t0 = Instant::now();
        sc.send(message(
            "/n_set",
            vec![
                OscType::Int(999),
                text("freq"),
                OscType::Float(200.0 + i as f32),
            ],
        ))?;
        sc.request(
            message("/sync", vec![OscType::Int(i)]),
            "/synced",
            Duration::from_secs(2),
        )?;
        sets.push(ms(t0.elapsed()));
    }
    rows.push(Row::new("peer.scsynth_n_set_sync_ms", "ms", sets));
    sc.send(message("/n_free", vec![OscType::Int(999)]))?;

    // CPU of N sines in scsynth.
    let counts: &[usize] = if quick { &[16] } else { &[16, 64] };
    for &count in counts {
        for i in 0..count {
            sc.s_new(2000 + i as i32, 110.0 + i as f32)?;
        }
        let (cpu, xruns) = cpu_and_xruns(server, &[sc.child.id()])?;
        rows.push(single(
            format!("cpu_pct.scsynth_sines_{count}"),
            "% core",
            cpu,
        ));
        rows.push(single(
            format!("xruns.scsynth_sines_{count}"),
            "xruns",
            xruns as f64,
        ));
        for i in 0..count {
            sc.send(message("/n_free", vec![OscType::Int(2000 + i as i32)]))?;
        }
    }

    // What a crash costs with scsynth: everything stops; time to sound again.
    let t0 = Instant::now();
    sc.crash();
    let sc = Scsynth::start(server)?;
    sc.s_new(3000, 220.0)?;
    rows.push(single(
        "peer.scsynth_kill_to_sound_again_ms".into(),
        "ms",
        ms(t0.elapsed()),
    ));
    drop(sc);

    // modsynth: CPU of N VCO modules (supervisor + every worker, spares included).
    for &count in counts {
        let sup = Supervisor::start(server, 8)?;
        for i in 0..count {
            sup.new_module("vco", &format!("v{i}"), &[("freq", 110.0 + i as f32)])?;
        }
        let pids = family(sup.pid());
        let (cpu, xruns) = cpu_and_xruns(server, &pids)?;
        rows.push(single(
            format!("cpu_pct.modsynth_vco_{count}"),
            "% core",
            cpu,
        ));
        rows.push(single(
            format!("xruns.modsynth_vco_{count}"),
            "xruns",
            xruns as f64,
        ));
        drop(sup);
    }

    // Plain JACK sine clients: the floor of one process per voice.
    let plain: &[usize] = if quick { &[8] } else { &[8, 32, 64] };
    for &count in plain {
        let mut children = Vec::new();
        for _ in 0..count {
            let child = server
                .command("jack_simple_client")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("jack_simple_client: {e}"))?;
            children.push(child);
        }
        wait_for_clients(server, count)?;
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        let (cpu, xruns) = cpu_and_xruns(server, &pids)?;
        rows.push(single(
            format!("cpu_pct.plain_jack_sine_clients_{count}"),
            "% core",
            cpu,
        ));
        rows.push(single(
            format!("xruns.plain_jack_sine_clients_{count}"),
            "xruns",
            xruns as f64,
        ));
        for mut c in children {
            stop(&mut c);
        }
    }
    Ok(rows)
}

/// Waits until `count` jack_simple_client instances have registered their ports.
fn wait_for_clients(server: &JackServer, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = server
            .command("jack_lsp")
            .output()
            .map_err(|e| e.to_string())?;
        let ready = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.ends_with(":output1"))
            .count();
        if ready >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {ready} of {count} jack_simple_client instances started"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Supervisor latency rows compared with the peer's.
pub fn compare(rows: &mut [Row]) {
    let median = |rows: &[Row], name: &str| rows.iter().find(|r| r.name == name).map(|r| r.median);
    let pairs = [
        ("create_ms.running_0", "peer.scsynth_s_new_n_go_ms"),
        ("set_sync_ms", "peer.scsynth_n_set_sync_ms"),
        ("cpu_pct.modsynth_vco_16", "cpu_pct.scsynth_sines_16"),
        ("cpu_pct.modsynth_vco_64", "cpu_pct.scsynth_sines_64"),
    ];
    for (ours, theirs) in pairs {
        if let Some(base) = median(rows, theirs) {
            if let Some(row) = rows.iter_mut().find(|r| r.name == ours) {
                row.ratio = Some(row.median / base);
                row.baseline = Some(theirs.to_string());
            }
        }
    }
}
