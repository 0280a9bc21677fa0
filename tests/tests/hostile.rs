//! Hostile senders against a live `modsynthd`: nothing a sender does may deafen,
//! stall, exhaust or misuse it. After every phase `/status` answers within 1 s and a
//! legitimate `/module/set` is applied; over the whole run the supervisor's memory
//! grows less than 20 MB, no log line says "panicked" and nothing is written
//! outside its sets dir. A second test checks that a flood is fully accounted for.

use modsynth_control::client::Client;
use modsynth_control::osc::{message, text};
use modsynth_control::status::StatusReport;
use modsynth_model::catalog;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::{unique_name, Supervisor};
use rosc::{encoder, OscBundle, OscMessage, OscPacket, OscType};
use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A tiny deterministic generator (xorshift64*): the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn encode(p: OscPacket) -> Vec<u8> {
    encoder::encode(&p).unwrap()
}

fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

fn set_msg(id: &str, param: &str, value: f32) -> OscPacket {
    msg(
        "/module/set",
        vec![text(id), text(param), OscType::Float(value)],
    )
}

/// An NTP timetag `ahead` of now.
fn timetag_in(ahead: Duration) -> (u32, u32) {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + ahead;
    (
        (t.as_secs() + 2_208_988_800) as u32,
        ((u64::from(t.subsec_nanos()) << 32) / 1_000_000_000) as u32,
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends datagrams as fast as the socket takes them (a full send buffer is the
/// sender's problem, not the test's).
fn blast(socket: &UdpSocket, to: std::net::SocketAddr, datagrams: impl Iterator<Item = Vec<u8>>) {
    for d in datagrams {
        let _ = socket.send_to(&d, to);
    }
}

/// `/status`, asked again every 200 ms until it answers or `within` passed: a
/// datagram that meets a full receive buffer is dropped (and counted), and a
/// client retries it (the buffer is bounded, so it empties quickly).
fn status_within(sup: &Supervisor, within: Duration) -> Result<StatusReport, String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let client = Client::new(sup.osc)?.with_timeout(left.min(Duration::from_millis(200)));
        match client.query(message("/status", vec![]), "/status.reply") {
            Ok(reply) => {
                let Some(OscType::String(json)) = reply.args.first() else {
                    return Err("empty /status.reply".into());
                };
                return serde_json::from_str(json).map_err(|e| e.to_string());
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
    }
}

/// After a phase: `/status` answers within 1 s and a legitimate set is applied.
fn still_serving(sup: &Supervisor, phase: &str, round: u32) {
    let started = Instant::now();
    // The queue may still hold the tail of the phase's flood: it is bounded
    // (4096 messages), so the answer comes within the second all the same.
    status_within(sup, Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("after {phase}: no /status within 1 s: {e}"));
    let value = (round % 10) as f32 * 0.5 + 0.25;
    sup.set("c1", "value", value)
        .unwrap_or_else(|e| panic!("after {phase}: the legitimate set failed: {e}"));
    let got = sup
        .client()
        .query(
            message("/module/get", vec![text("c1"), text("value")]),
            "/module/value",
        )
        .unwrap();
    assert_eq!(got.args[2], OscType::Float(value), "after {phase}");
    eprintln!(
        "hostile: {phase}: serving again after {} ms",
        started.elapsed().as_millis()
    );
}

#[test]
fn nothing_a_sender_does_deafens_stalls_exhausts_or_misuses_modsynthd() {
    let server = JackServer::start().unwrap();
    let name = unique_name();
    // One of every type and `c1` fit, with room for one more: the floods below
    // must run into the limit, not into the catalog's size.
    let limit = catalog::modules().len() + 2;
    let mut sup =
        Supervisor::start_named(&server, &name, 2, &["--max-modules", &limit.to_string()]).unwrap();
    let to = sup.osc;
    let sets = sup.sets_dir.clone();
    let outside = sets.parent().unwrap().join(format!("{name}-x"));
    let tmp_x = std::env::temp_dir().join(format!("{name}-x"));
    // One module of every type, without standbys (fewer processes on a busy
    // machine): the edge-float phase reaches every parameter of every module.
    for spec in catalog::modules() {
        sup.new_module_without_standby(spec.name, &format!("m-{}", spec.name), &[])
            .unwrap();
    }
    sup.new_module_without_standby("const", "c1", &[]).unwrap();
    let rss_before = rss_kib(sup.pid());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut round = 0;
    let mut phase = |sup: &Supervisor, name: &str| {
        round += 1;
        still_serving(sup, name, round);
    };

    // 1. Random, truncated and bit-flipped datagrams. The valid ones they are made
    //    from only touch c1 or ask questions, so a flip cannot create anything.
    let valid: Vec<Vec<u8>> = vec![
        encode(set_msg("c1", "value", 1.0)),
        encode(msg("/status", vec![])),
        encode(msg("/sync", vec![OscType::Int(7)])),
        encode(OscPacket::Bundle(OscBundle {
            timetag: (0, 1).into(),
            content: vec![set_msg("c1", "value", 2.0)],
        })),
    ];
    let random = (0..100_000).map(|i| {
        let base = &valid[i % valid.len()];
        match i % 4 {
            0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            1 => base[..rng.below(base.len())].to_vec(),
            2 => {
                let mut d = base.clone();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(d.len());
                    d[at] ^= 1 << rng.below(8);
                }
                d
            }
            _ => {
                let mut d = b"#bundle\0".to_vec();
                d.extend((0..rng.below(64)).map(|_| rng.next() as u8));
                d
            }
        }
    });
    blast(&socket, to, random.collect::<Vec<_>>().into_iter());
    phase(&sup, "100000 random, truncated and bit-flipped datagrams");

    // 2. Far-future bundles: refused and counted, never scheduled.
    let far = encode(OscPacket::Bundle(OscBundle {
        timetag: timetag_in(Duration::from_secs(3600)).into(),
        content: vec![set_msg("c1", "value", 9.0)],
    }));
    blast(&socket, to, std::iter::repeat_n(far, 20_000));
    let s = status_within(&sup, Duration::from_secs(1)).unwrap();
    assert!(s.traffic.far_future > 0, "{:?}", s.traffic);
    assert!(!s.traffic.sources.is_empty(), "{:?}", s.traffic);
    phase(&sup, "20000 far-future bundles");

    // 3. Bundles nested 1000 deep (and the largest depth a datagram holds).
    let mut deep = set_msg("c1", "value", 9.0);
    for _ in 0..1000 {
        deep = OscPacket::Bundle(OscBundle {
            timetag: (0, 1).into(),
            content: vec![deep],
        });
    }
    blast(&socket, to, std::iter::repeat_n(encode(deep), 100));
    let mut deepest = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
    while deepest.len() + 20 < 65_000 {
        let mut outer = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        outer.extend((deepest.len() as u32).to_be_bytes());
        outer.extend(&deepest);
        deepest = outer;
    }
    blast(&socket, to, std::iter::repeat_n(deepest, 10));
    phase(&sup, "bundles nested 1000 and 3000 deep");

    // 4. Every edge float for every parameter of every module (over TCP: a burst
    //    of 840 messages from one UDP port would partly meet a full queue, and
    //    what is checked here is what happens to the values).
    let edges = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::MIN_POSITIVE / 2.0,
        f32::MAX,
        -f32::MAX,
    ];
    let client = Client::connect(sup.osc).unwrap();
    assert!(client.is_tcp());
    for spec in catalog::modules() {
        let id = format!("m-{}", spec.name);
        for p in spec.params {
            for &v in &edges {
                client
                    .send(message(
                        "/module/set",
                        vec![text(&id), text(p.name), OscType::Float(v)],
                    ))
                    .unwrap();
                client
                    .send(message(
                        &format!("/{id}/{}", p.name),
                        vec![OscType::Double(v as f64)],
                    ))
                    .unwrap();
            }
        }
    }
    client.sync().unwrap();
    for spec in catalog::modules() {
        let id = format!("m-{}", spec.name);
        for p in spec.params {
            let got = client
                .query(
                    message("/module/get", vec![text(&id), text(p.name)]),
                    "/module/value",
                )
                .unwrap();
            if let OscType::Float(v) = got.args[2] {
                assert!(
                    v.is_finite() && v >= p.min && v <= p.max,
                    "{id}.{} = {v} after the edge floats",
                    p.name
                );
            }
        }
    }
    phase(&sup, "edge floats for every parameter");

    // 5. Floods of sets and creates: the limit holds, nothing waits forever.
    blast(
        &socket,
        to,
        (0..20_000).map(|i| encode(set_msg("c1", "value", (i % 7) as f32))),
    );
    blast(
        &socket,
        to,
        (0..300).map(|i| {
            encode(msg(
                "/module/new",
                vec![
                    text("const"),
                    text(&format!("flood{i}")),
                    text("standby"),
                    text("none"),
                ],
            ))
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status_within(&sup, Duration::from_secs(5)).unwrap();
        let creating = s.modules.len();
        assert!(
            creating <= limit,
            "{creating} modules: the limit did not hold"
        );
        if s.traffic.queued == 0 && s.spare_ready > 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    phase(&sup, "20000 sets and 300 creates");

    // 6. Set loads of things that are not set files.
    std::os::unix::fs::symlink("/dev/zero", sets.join("zero.toml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", sets.join("passwd.toml")).unwrap();
    nix::unistd::mkfifo(&sets.join("fifo.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::create_dir(sets.join("dir.toml")).unwrap();
    for name in [
        "zero.toml",
        "passwd.toml",
        "fifo.toml",
        "dir.toml",
        "/dev/zero",
        "/etc/passwd",
        "../../../etc/passwd",
    ] {
        let started = Instant::now();
        let e = sup
            .client()
            .call(message("/set/load", vec![text(name)]))
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: {:?}",
            started.elapsed()
        );
        assert!(!e.contains("root:") && !e.contains("key"), "{name}: {e}");
        eprintln!("hostile: /set/load {name}: {e}");
    }
    phase(
        &sup,
        "/set/load of /dev/zero, a FIFO, a directory and /etc/passwd",
    );

    // 7. Saves outside the sets dir.
    let relative_out = format!("../{name}-x");
    let tmp_out = tmp_x.to_str().unwrap().to_string();
    for target in [relative_out.as_str(), tmp_out.as_str()] {
        let e = sup
            .client()
            .call(message("/set/save", vec![text(target)]))
            .unwrap_err();
        assert!(e.contains("not a set name"), "{target}: {e}");
    }
    assert!(
        !outside.exists() && !tmp_x.exists(),
        "a file was written outside"
    );
    phase(&sup, "/set/save to ../x and /tmp/x");

    let s = status_within(&sup, Duration::from_secs(5)).unwrap();
    let rss_after = rss_kib(sup.pid());
    eprintln!(
        "hostile: supervisor RSS {rss_before} -> {rss_after} KiB; traffic {:?}",
        s.traffic
    );
    assert!(
        rss_after < rss_before + 20 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    // SIGHUP stops it cleanly, like SIGTERM.
    let exit = sup.stop_with(nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(exit.success(), "{exit}");
    let log = sup.stderr();
    assert!(!log.contains("panicked"), "a panic was logged:\n{log}");
    assert!(modsynth_tests::supervisor::segments_of(&name).is_empty());
}

#[test]
fn a_flood_of_sets_is_fully_accounted_for() {
    const N: u64 = 20_000;
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 1).unwrap();
    sup.new_module_without_standby("const", "c1", &[]).unwrap();
    let before = status_within(&sup, Duration::from_secs(5)).unwrap();
    // The flood comes from 127.0.0.2 (loopback, so allowed), everything else from
    // 127.0.0.1: the per-sender counts of 127.0.0.2 are the flood's alone.
    let flood = UdpSocket::bind("127.0.0.2:0").unwrap();
    blast(
        &flood,
        sup.osc,
        (0..N).map(|i| encode(set_msg("c1", "value", (i % 5) as f32))),
    );
    // Once the queue is empty everything the flood left is handled.
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_within(&sup, Duration::from_secs(5))
        .unwrap()
        .traffic
        .queued
        > 0
    {
        assert!(Instant::now() < deadline, "the queue never emptied");
    }
    // The knob's last position wins, whatever the flood did to the worker's ring.
    blast(
        &flood,
        sup.osc,
        std::iter::once(encode(set_msg("c1", "value", 4.5))),
    );
    sup.client().sync().unwrap();
    let last = sup
        .client()
        .query(
            message("/module/get", vec![text("c1"), text("value")]),
            "/module/value",
        )
        .unwrap();
    assert_eq!(last.args[2], OscType::Float(4.5));
    let after = status_within(&sup, Duration::from_secs(5)).unwrap();
    let flood_counts = after.traffic.sources["127.0.0.2"];
    let module = |s: &StatusReport| s.modules.iter().find(|m| m.id == "c1").cloned().unwrap();
    let (m0, m1) = (module(&before), module(&after));
    let kernel = after.traffic.kernel_drops - before.traffic.kernel_drops;
    let applied = m1.params.applied - m0.params.applied;
    let ring_dropped = m1.params.dropped - m0.params.dropped;
    // Coalesced in the worker (its ring full) or in the supervisor (more than a
    // period's budget of changes before the worker played one).
    let coalesced = m1.params.coalesced - m0.params.coalesced + after.counters.params_held_back
        - before.counters.params_held_back;
    // The last set above is part of it from here on.
    let (n, received) = (N + 1, flood_counts.received);
    eprintln!(
        "flood of {n}: received {received}, applied {applied}, coalesced {coalesced}, \
         dropped at the worker's ring {ring_dropped}, refused {}, dropped at the queue \
         {}, dropped by the kernel {kernel} (all senders)",
        flood_counts.refused, flood_counts.dropped
    );
    // What the kernel dropped never arrived, and the kernel counted it.
    assert!(
        n - received <= kernel,
        "{} lost without a count",
        n - received - kernel
    );
    assert_eq!(
        applied + coalesced + ring_dropped + flood_counts.refused + flood_counts.dropped,
        received,
        "received = applied + coalesced + refused + dropped"
    );
    assert!(applied > 0);
}

/// Sends `packets` SLIP-framed on `stream`.
fn blast_tcp(stream: &mut std::net::TcpStream, packets: impl Iterator<Item = Vec<u8>>) {
    use std::io::Write;
    let mut out = Vec::new();
    for p in packets {
        out.extend(modsynth_control::slip::encode(&p));
        if out.len() > 64 * 1024 {
            stream.write_all(&out).unwrap();
            out.clear();
        }
    }
    stream.write_all(&out).unwrap();
}

#[test]
fn a_flood_over_tcp_loses_nothing_and_the_cli_client_talks_tcp() {
    const N: u64 = 20_000;
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 1).unwrap();
    sup.new_module_without_standby("const", "c1", &[]).unwrap();
    let client = Client::connect(sup.osc).unwrap();
    assert!(client.is_tcp(), "modsynthd offers TCP on its OSC port");
    let status = |c: &Client| -> StatusReport {
        let reply = c
            .query(message("/status", vec![]), "/status.reply")
            .unwrap();
        let Some(OscType::String(json)) = reply.args.first() else {
            panic!("empty /status.reply")
        };
        serde_json::from_str(json).unwrap()
    };
    let before = status(&client);
    let mut flood = std::net::TcpStream::connect(sup.osc).unwrap();
    blast_tcp(
        &mut flood,
        (0..N).map(|i| encode(set_msg("c1", "value", (i % 5) as f32))),
    );
    // On the same connection, after the flood: the last value wins.
    blast_tcp(
        &mut flood,
        std::iter::once(encode(set_msg("c1", "value", 4.5))),
    );
    // The flood's connection is read in order: once its last set is applied,
    // everything before it was handled.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        client.sync().unwrap();
        let got = client
            .query(
                message("/module/get", vec![text("c1"), text("value")]),
                "/module/value",
            )
            .unwrap();
        if got.args[2] == OscType::Float(4.5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood's last set never arrived"
        );
    }
    client.sync().unwrap();
    let after = status(&client);
    let src = |s: &StatusReport| s.traffic.sources["127.0.0.1"];
    let module = |s: &StatusReport| s.modules.iter().find(|m| m.id == "c1").cloned().unwrap();
    let applied = module(&after).params.applied - module(&before).params.applied;
    let coalesced = module(&after).params.coalesced - module(&before).params.coalesced
        + after.counters.params_held_back
        - before.counters.params_held_back;
    let (dropped, refused) = (
        src(&after).dropped - src(&before).dropped,
        src(&after).refused - src(&before).refused,
    );
    eprintln!(
        "TCP flood of {}: applied {applied}, coalesced {coalesced}, refused {refused}, \
         dropped {dropped}",
        N + 1
    );
    assert_eq!((dropped, refused), (0, 0), "TCP drops nothing");
    assert_eq!(applied + coalesced, N + 1, "sent = applied + coalesced");

    // The command line talks TCP too (and still works).
    let out = std::process::Command::new(modsynth_tests::workers::bin_path("modsynth").unwrap())
        .args(["--osc", &sup.osc.to_string(), "get", "c1", "value"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4.5");
}

#[test]
fn a_tcp_client_that_reads_no_replies_is_cut_off_and_stalls_no_one() {
    use std::io::Read;
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 1).unwrap();
    sup.new_module_without_standby("vco", "v1", &[]).unwrap();
    // Each request earns a ~1 KB /fail (it quotes the bad choice); 30,000 of
    // them are far more than the socket buffers and the reply queue hold.
    let long = "x".repeat(1000);
    let mut deaf = std::net::TcpStream::connect(sup.osc).unwrap();
    let sent = std::thread::spawn({
        let mut deaf = deaf.try_clone().unwrap();
        move || {
            let packet = encode(msg(
                "/module/set",
                vec![text("v1"), text("wave"), text(&long)],
            ));
            // Fails once modsynthd has cut it off: that is the point.
            let mut framed = Vec::new();
            for _ in 0..30_000 {
                framed.extend(modsynth_control::slip::encode(&packet));
            }
            use std::io::Write;
            let _ = deaf.write_all(&framed);
        }
    });
    // Meanwhile everyone else is served within a second.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sent.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the deaf client's writes never ended"
        );
        let started = Instant::now();
        status_within(&sup, Duration::from_secs(1)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    sent.join().unwrap();
    // Cut off: what it can still read ends (EOF or reset) long before the
    // 30 MB of replies it asked for.
    deaf.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut total, mut sink) = (0usize, vec![0u8; 1 << 20]);
    let ended = loop {
        match deaf.read(&mut sink) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    eprintln!("the deaf client got {total} bytes before it was cut off");
    assert!(
        ended && total < 30_000 * 1000,
        "not disconnected ({total} bytes)"
    );
    status_within(&sup, Duration::from_secs(1)).unwrap();
}

#[test]
fn binding_anywhere_but_loopback_needs_an_allowlist() {
    let run = |args: &[&str]| {
        std::process::Command::new(modsynth_tests::workers::bin_path("modsynthd").unwrap())
            .args(["--name", &unique_name(), "--osc-port", "0"])
            .args(args)
            .output()
            .unwrap()
    };
    let open = run(&["--osc-bind", "0.0.0.0"]);
    assert!(!open.status.success());
    let said = String::from_utf8_lossy(&open.stderr);
    assert!(said.contains("need --allow"), "{said}");
    let bad = run(&["--osc-bind", "0.0.0.0", "--allow", "192.168.1.0/33"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not an address or CIDR"));
}

#[test]
fn a_hung_worker_under_a_flood_of_its_parameter_changes_does_not_stall_the_core() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 1).unwrap();
    sup.new_module_without_standby("const", "c1", &[]).unwrap();
    let pid = sup.module_status("c1").unwrap().pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let client = Client::connect(sup.osc).unwrap();
    for i in 0..5000 {
        client
            .send(message(
                "/module/set",
                vec![text("c1"), text("value"), OscType::Float((i % 7) as f32)],
            ))
            .unwrap();
    }
    // Before the fix the core blocked in a send to the stopped worker: no
    // /status for as long as it stayed stopped.
    let answered = status_within(&sup, Duration::from_secs(2));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGCONT,
    );
    let s = answered.unwrap();
    eprintln!(
        "hung worker flooded: {} changes held back in the supervisor",
        s.counters.params_held_back
    );
    assert!(s.counters.params_held_back > 0);
}
