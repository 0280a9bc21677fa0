//! Rows that compare modsynth with what a user would pick instead, on the same JACK
//! server in the same run (`--peers`):
//!
//! - SuperCollider's `scsynth`: `/s_new` -> `/n_go` and `/n_set` + `/sync` round
//!   trips, CPU and xruns of 16 and 64 sine synths, and the time from a SIGKILL to
//!   sound again (restart, load the SynthDef, start the synth: with one process for
//!   everything a crash silences every voice).
//! - modsynth: CPU and xruns of 8, 32 and 64 VCO modules with hot standbys of their
//!   own (two workers each), with hot standbys seated in standby hosts
//!   (`seated_standby`: `modsynthd --standby-seats 8`, one worker each and one host
//!   per 8 standbys) and without (`standby none`, one worker each), all processes
//!   (supervisor, workers, hosts, the pool's spares), once every standby is ready; the same
//!   CPU per module (`cpu_pct_per_module.*`), and the wake-ups a second of each
//!   worker's threads over the same window: its busiest thread (JACK's process
//!   thread, once a period: 187.5/s at 256 frames) and all its other threads
//!   together (`wakeups_per_s.*.audio_thread`, `.other_threads`; n = workers), and
//!   the supervisor's (`.supervisor`).
//! - plain JACK clients (`jack_simple_client`, a C sine client from jackd2's
//!   examples): CPU and xruns of 8, 32 and 64 of them, the floor any
//!   one-process-per-voice design pays, and their CPU per client.
//!
//! - steady state, in a full run: xruns over a minute with nothing created or freed
//!   (`xruns_per_min.*`), for 32 VCOs with standbys (64 workers; seated: 32 workers
//!   and 4 hosts) and for 32 and 64 plain clients.
//!
//! - the scale, in a full run: the largest number of VCO modules with seated
//!   standbys, of plain clients and of scsynth sines that plays a minute without
//!   an xrun (`xrun_free_max.*`, counts 1, 2, 4, ... 64, up from the smallest), and
//!   the xruns of the server alone in a minute (`xruns_per_min.server_alone`, only
//!   the capture client that counts them), the floor under all of them.
//!
//! Only 8 of each in a quick run. [`compare`] gives every modsynth row with a peer
//! its ratio: create and set + sync to scsynth's `/s_new` and `/n_set`, VCOs to
//! scsynth's sines, CPU per module to CPU per plain client, the scale curve's N
//! modules ([`crate::scale`]) to N plain clients, and the failover gaps to
//! scsynth's kill to sound again.
//!
//! CPU and xruns are measured by [`Load`] (3 s window, % of one core).

use crate::load::{family, Load};
use crate::settle::wait_settled;
use crate::Row;
use modsynth_control::osc::{message, text};
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use rosc::{OscMessage, OscPacket, OscType};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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
    stop_all(std::slice::from_mut(child));
}

/// [`stop`] for many at once: all are sent SIGTERM first and share the 5 s.
pub fn stop_all(children: &mut [Child]) {
    for child in children.iter() {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for child in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn free_udp_port() -> Result<u16, String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.port())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn single(name: String, unit: &'static str, value: f64) -> Row {
    Row::summary(name, unit, value, 1)
}

/// The CPU and xrun rows of one measured group of processes.
fn load_rows(server: &JackServer, what: &str, pids: &[u32]) -> Result<[Row; 2], String> {
    let load = Load::measure(server, pids)?;
    Ok(cpu_and_xruns(what, &load))
}

fn cpu_and_xruns(what: &str, load: &Load) -> [Row; 2] {
    [
        single(format!("cpu_pct.{what}"), "% core", load.cpu_pct),
        single(format!("xruns.{what}"), "xruns", load.xruns as f64),
    ]
}

/// CPU per module (or plain client) of `count` of them.
fn per_module(what: &str, load: &Load, count: usize) -> Row {
    single(
        format!("cpu_pct_per_module.{what}"),
        "% core",
        load.cpu_pct / count.max(1) as f64,
    )
}

/// The thread rows of a measured modsynth: per worker, the wake-ups a second of its
/// busiest thread and of its other threads together; per role (`primary`,
/// `standby`, `spare`: `role` names it by pid), the CPU of a worker and of its busiest
/// thread; the supervisor's wake-ups as a whole.
fn thread_rows(
    what: &str,
    load: &Load,
    supervisor: u32,
    role: impl Fn(u32) -> &'static str,
) -> Vec<Row> {
    let mut audio = Vec::new();
    let mut other = Vec::new();
    let mut cpu: std::collections::BTreeMap<&str, (Vec<f64>, Vec<f64>)> = Default::default();
    let mut rows = Vec::new();
    for (pid, threads) in &load.threads {
        let total: f64 = threads.iter().map(|t| t.wakeups_per_s).sum();
        if *pid == supervisor {
            rows.push(single(
                format!("wakeups_per_s.{what}.supervisor"),
                "1/s",
                total,
            ));
        } else if let Some(busiest) = threads.first() {
            audio.push(busiest.wakeups_per_s);
            other.push(total - busiest.wakeups_per_s);
            let (worker, audio_thread) = cpu.entry(role(*pid)).or_default();
            worker.push(threads.iter().map(|t| t.cpu_pct).sum());
            audio_thread.push(busiest.cpu_pct);
        }
    }
    rows.push(Row::new(
        format!("wakeups_per_s.{what}.audio_thread"),
        "1/s",
        audio,
    ));
    rows.push(Row::new(
        format!("wakeups_per_s.{what}.other_threads"),
        "1/s",
        other,
    ));
    for (role, (worker, audio_thread)) in cpu {
        rows.push(Row::new(
            format!("cpu_pct.{what}.worker.{role}"),
            "% core",
            worker,
        ));
        rows.push(Row::new(
            format!("cpu_pct.{what}.audio_thread.{role}"),
            "% core",
            audio_thread,
        ));
    }
    rows
}

/// The module count of the steady-state xrun rows (issue 14: with standbys, no more
/// xruns a minute than the same clients plain, + 1).
const STEADY_MODULES: usize = 32;

/// How long the steady-state xrun rows count.
const STEADY_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// `xruns_per_min.<what>`: xruns over [`STEADY_WINDOW`] with nothing created or
/// freed, after the CPU window.
fn steady_xruns(server: &JackServer, what: &str) -> Result<Row, String> {
    let minute = Load::measure_for(server, &[], STEADY_WINDOW)?;
    Ok(single(
        format!("xruns_per_min.{what}"),
        "xruns",
        minute.xruns as f64 * 60.0 / STEADY_WINDOW.as_secs_f64(),
    ))
}

/// The counts the `xrun_free_max.*` rows try, smallest first.
const XRUN_FREE_LADDER: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// `xrun_free_max.<what>`: the largest count on [`XRUN_FREE_LADDER`] that played a
/// whole [`STEADY_WINDOW`] without an xrun, climbing from the smallest and
/// stopping at the first window with one (0: not even one did). `play(n)` brings
/// what plays from the last count to `n`.
fn xrun_free_max(
    server: &JackServer,
    what: &str,
    mut play: impl FnMut(usize) -> Result<(), String>,
) -> Result<Row, String> {
    let mut largest = 0;
    for n in XRUN_FREE_LADDER {
        play(n)?;
        let minute = Load::measure_for(server, &[], STEADY_WINDOW)?;
        eprintln!("bench: {n} {what}: {} xruns in a minute", minute.xruns);
        if minute.xruns > 0 {
            break;
        }
        largest = n;
    }
    Ok(single(
        format!("xrun_free_max.{what}"),
        "modules",
        largest as f64,
    ))
}

/// Where the modules of a CPU row have their hot standbys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standbys {
    /// A worker (a JACK client) of its own per standby: two clients per module.
    Own,
    /// In seats of standby hosts (`modsynthd --standby-seats`): one client per
    /// module plus one per [`SEATS_PER_HOST`] standbys.
    Seated,
    /// `standby none`: one client per module.
    None,
}

/// The seats of a standby host in the `Seated` rows.
const SEATS_PER_HOST: &str = "8";

impl Standbys {
    const ALL: [Standbys; 3] = [Standbys::Own, Standbys::Seated, Standbys::None];

    /// The row name's suffix.
    fn name(self) -> &'static str {
        match self {
            Standbys::Own => "standby",
            Standbys::Seated => "seated_standby",
            Standbys::None => "no_standby",
        }
    }

    /// `modsynthd`'s arguments beside the pool.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Standbys::Seated => &["--standby-seats", SEATS_PER_HOST],
            Standbys::Own | Standbys::None => &[],
        }
    }
}

/// The module counts the CPU rows are measured at (scsynth, modsynth and plain
/// clients alike, so each count has its peers).
pub fn counts(quick: bool) -> &'static [usize] {
    if quick {
        &[8]
    } else {
        &[8, 32, 64]
    }
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
    let counts = counts(quick);
    for &count in counts {
        for i in 0..count {
            sc.s_new(2000 + i as i32, 110.0 + i as f32)?;
        }
        rows.extend(load_rows(
            server,
            &format!("scsynth_sines_{count}"),
            &[sc.child.id()],
        )?);
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

    // modsynth: CPU of N VCO modules with hot standbys of their own, with hot
    // standbys in seats of standby hosts, and without (supervisor and every worker,
    // the pool's spares and the hosts included), once everything is set up.
    for &count in counts {
        for standbys in Standbys::ALL {
            let sup = Supervisor::start_with(server, 8, standbys.flags())?;
            for i in 0..count {
                let (id, freq) = (format!("v{i}"), [("freq", 110.0 + i as f32)]);
                if standbys == Standbys::None {
                    sup.new_module_without_standby("vco", &id, &freq)?;
                } else {
                    sup.new_module("vco", &id, &freq)?;
                }
            }
            wait_settled(&sup)?;
            let what = format!("modsynth_vco_{count}_{}", standbys.name());
            let status = sup.status()?;
            let primaries: Vec<u32> = status.modules.iter().map(|m| m.pid).collect();
            let standby_pids: Vec<u32> = status
                .modules
                .iter()
                .filter_map(|m| m.standby_worker.as_ref().map(|s| s.pid))
                .collect();
            let role = |pid: u32| {
                if primaries.contains(&pid) {
                    "primary"
                } else if standby_pids.contains(&pid) {
                    "standby"
                } else {
                    "spare"
                }
            };
            let load = Load::measure(server, &family(sup.pid()))?;
            rows.extend(cpu_and_xruns(&what, &load));
            rows.push(per_module(&what, &load, count));
            rows.extend(thread_rows(&what, &load, sup.pid(), role));
            if count == STEADY_MODULES && standbys != Standbys::None && !quick {
                rows.push(steady_xruns(server, &what)?);
            }
        }
    }

    // Plain JACK sine clients: the floor of one process per voice.
    for &count in counts {
        let mut children = start_simple_clients(server, count)?;
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        let what = format!("plain_jack_sine_clients_{count}");
        let measured = Load::measure(server, &pids).and_then(|load| {
            // 32 modules with standbys are 64 clients: both counts get the minute.
            let minute = if !quick && [STEADY_MODULES, 2 * STEADY_MODULES].contains(&count) {
                Some(steady_xruns(server, &what)?)
            } else {
                None
            };
            Ok((load, minute))
        });
        stop_all(&mut children);
        let (load, minute) = measured?;
        rows.extend(cpu_and_xruns(&what, &load));
        rows.push(per_module(&what, &load, count));
        rows.extend(minute);
    }

    Ok(rows)
}

/// How large a set plays a whole minute without an xrun (`--peers` in a full run,
/// or `--only xrun_free`; up to 7 minutes a kind): the server alone first, the
/// floor every count shares, then plain clients, VCOs with seated standbys and
/// scsynth sines (see [`xrun_free_max`]).
pub fn xrun_free_rows(server: &JackServer) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    rows.push(steady_xruns(server, "server_alone")?);
    let mut plain: Vec<Child> = Vec::new();
    let row = xrun_free_max(server, "plain_jack_sine_clients", |n| {
        plain.extend(start_simple_clients(server, n - plain.len())?);
        Ok(())
    });
    stop_all(&mut plain);
    rows.push(row?);
    let sup = Supervisor::start_with(server, 8, Standbys::Seated.flags())?;
    let mut playing = 0;
    rows.push(xrun_free_max(server, "modsynth_vco_seated_standby", |n| {
        for i in playing..n {
            sup.new_module("vco", &format!("v{i}"), &[("freq", 110.0 + i as f32)])?;
        }
        playing = n;
        wait_settled(&sup).map(|_| ())
    })?);
    drop(sup);
    let sc = Scsynth::start(server)?;
    let mut voices = 0;
    rows.push(xrun_free_max(server, "scsynth_sines", |n| {
        for i in voices..n {
            sc.s_new(4000 + i as i32, 110.0 + i as f32)?;
        }
        voices = n;
        Ok(())
    })?);
    Ok(rows)
}

/// Starts `count` of jackd2's `jack_simple_client` and waits until each plays (its
/// `output1` is connected, which it does once active). Stop them with [`stop_all`].
pub fn start_simple_clients(server: &JackServer, count: usize) -> Result<Vec<Child>, String> {
    let mut children = Vec::new();
    for _ in 0..count {
        match server
            .command("jack_simple_client")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(e) => {
                stop_all(&mut children);
                return Err(format!("jack_simple_client: {e}"));
            }
        }
    }
    if let Err(e) = wait_for_playing_clients(server, count) {
        stop_all(&mut children);
        return Err(e);
    }
    Ok(children)
}

/// Waits until `count` jack_simple_client instances have their `output1` connected.
fn wait_for_playing_clients(server: &JackServer, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = server
            .command("jack_lsp")
            .arg("-c")
            .output()
            .map_err(|e| e.to_string())?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = listing.lines().collect();
        // `jack_lsp -c` lists each port's connections indented below it (so an
        // indented `simple:output1` is a connection of another port, not a port).
        let indented = |line: &str| line.starts_with(char::is_whitespace);
        let playing = lines
            .windows(2)
            .filter(|w| !indented(w[0]) && w[0].ends_with(":output1") && indented(w[1]))
            .count();
        if playing >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {playing} of {count} jack_simple_client instances started playing"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// modsynth rows and the peer row each is compared with: (ours, theirs, factor that
/// turns our unit into theirs). Every modsynth row with a peer is listed.
const PAIRS: &[(&str, &str, Factor)] = &[
    (
        "create_ms.running_0",
        "peer.scsynth_s_new_n_go_ms",
        Factor::One,
    ),
    (
        "set_sync_ms.running_0",
        "peer.scsynth_n_set_sync_ms",
        Factor::One,
    ),
    (
        "cpu_pct.running_8",
        "cpu_pct.plain_jack_sine_clients_8",
        Factor::One,
    ),
    (
        "cpu_pct.running_32",
        "cpu_pct.plain_jack_sine_clients_32",
        Factor::One,
    ),
    (
        "cpu_pct.running_64",
        "cpu_pct.plain_jack_sine_clients_64",
        Factor::One,
    ),
    (
        "xruns.running_8",
        "xruns.plain_jack_sine_clients_8",
        Factor::One,
    ),
    (
        "xruns.running_32",
        "xruns.plain_jack_sine_clients_32",
        Factor::One,
    ),
    (
        "xruns.running_64",
        "xruns.plain_jack_sine_clients_64",
        Factor::One,
    ),
    (
        "failover.silent_frames",
        "peer.scsynth_kill_to_sound_again_ms",
        Factor::FramesToMs,
    ),
    (
        "failover.spare_takeover_silent_ms",
        "peer.scsynth_kill_to_sound_again_ms",
        Factor::One,
    ),
];

/// How a modsynth row's median is brought to its peer's unit.
#[derive(Clone, Copy)]
enum Factor {
    One,
    FramesToMs,
}

/// Gives every modsynth row with a peer in `rows` its ratio to the peer (medians,
/// in the peer's unit). A peer median of 0 (no xruns) leaves the ratio out; the row
/// still names its peer.
pub fn compare(rows: &mut [Row], sample_rate: u32) {
    // Per count, as measured: VCOs to as many scsynth sines, CPU per module to CPU
    // per plain client.
    let mut pairs: Vec<(String, String, Factor)> = PAIRS
        .iter()
        .map(|&(a, b, f)| (a.to_string(), b.to_string(), f))
        .collect();
    for count in counts(false) {
        for standbys in Standbys::ALL {
            let ours = format!("modsynth_vco_{count}_{}", standbys.name());
            for measure in ["cpu_pct", "xruns"] {
                pairs.push((
                    format!("{measure}.{ours}"),
                    format!("{measure}.scsynth_sines_{count}"),
                    Factor::One,
                ));
            }
            pairs.push((
                format!("cpu_pct_per_module.{ours}"),
                format!("cpu_pct_per_module.plain_jack_sine_clients_{count}"),
                Factor::One,
            ));
        }
    }
    for (ours, theirs, factor) in &pairs {
        let (ours, theirs, factor) = (ours.as_str(), theirs.as_str(), *factor);
        let Some(base) = rows.iter().find(|r| r.name == theirs).map(|r| r.median) else {
            continue;
        };
        if let Some(row) = rows.iter_mut().find(|r| r.name == ours) {
            let scale = match factor {
                Factor::One => 1.0,
                Factor::FramesToMs => 1e3 / sample_rate as f64,
            };
            row.ratio = (base != 0.0).then(|| row.median * scale / base);
            row.baseline = Some(theirs.to_string());
        }
    }
}
