//! LV2 rows (`--only lv2`): one plugin hosted by modsynth against the same plugin
//! in `jalv` (the LV2 reference host, one plugin as one JACK client; Debian
//! package `jalv`, installed by `scripts/setup`), on the same server and period.
//!
//! - `lv2_create_ms.<plugin>`: `/module/new lv2:<plugin> id standby none` to its
//!   `/done` (ports registered and named, the plugin instantiated in a warm pool
//!   worker), against `lv2_create_ms.vco` (a built-in module, same path).
//! - `lv2_jalv_start_ms.<plugin>`: starting `jalv` with the plugin until all of
//!   its JACK ports exist (polled every millisecond through a JACK client).
//! - `cpu_pct.lv2_modsynth.<plugin>` and `cpu_pct.lv2_jalv.<plugin>`: the process
//!   playing the plugin (the module's primary worker without a standby; jalv), its
//!   inputs unconnected in both, over [`Load`]'s window. With a hot standby the
//!   plugin runs twice (lockstep): about twice the modsynth figure.
//!
//! Without `jalv` on `PATH` the jalv rows are left out and a note says so.

use crate::load::Load;
use crate::settle::wait_settled;
use crate::Row;
use modsynth_control::osc::{message, text};
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use std::io::ErrorKind;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The plugin measured: mda's Leslie (a rotary speaker: modulated delays and
/// filters, real DSP every sample), from `mda-lv2`, which `scripts/setup` installs.
const PLUGIN: &str = "http://drobilla.net/plugins/mda/Leslie";
const SHORT: &str = "Leslie";

/// The LV2 rows (see the module doc).
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let creates = if quick { 3 } else { 10 };
    let sup = Supervisor::start(server, 4)?;
    let client = sup.client();
    let mut rows = Vec::new();
    let timed_create = |module_type: &str, name: String| -> Result<Row, String> {
        let mut samples = Vec::new();
        for i in 0..creates {
            wait_settled(&sup)?;
            let id = format!("probe{i}");
            let t0 = Instant::now();
            client.call(message(
                "/module/new",
                vec![text(module_type), text(&id), text("standby"), text("none")],
            ))?;
            samples.push(ms(t0.elapsed()));
            client.call(message("/module/free", vec![text(&id)]))?;
        }
        Ok(Row::new(name, "ms", samples))
    };
    let builtin = timed_create("vco", "lv2_create_ms.vco".into())?;
    let plugin = timed_create(&format!("lv2:{PLUGIN}"), format!("lv2_create_ms.{SHORT}"))?
        .compared_with(&builtin);
    rows.push(builtin);

    // CPU of the worker playing the plugin.
    client.call(message(
        "/module/new",
        vec![
            text(&format!("lv2:{PLUGIN}")),
            text("rot"),
            text("standby"),
            text("none"),
        ],
    ))?;
    let status = wait_settled(&sup)?;
    let worker = status
        .modules
        .iter()
        .find(|m| m.id == "rot")
        .map(|m| m.pid)
        .ok_or("the module 'rot' is not in /status")?;
    let ours = Load::measure(server, &[worker])?;
    let ours = Row::summary(
        format!("cpu_pct.lv2_modsynth.{SHORT}"),
        "% core",
        ours.cpu_pct,
        1,
    )
    .note(format!(
        "{xruns} xruns; the worker process playing the plugin, no standby (with one: twice)",
        xruns = ours.xruns
    ));
    client.call(message("/module/free", vec![text("rot")]))?;
    drop(sup);

    match jalv_rows(server, creates, &plugin, &ours) {
        Ok(jalv) => {
            rows.push(plugin);
            rows.push(ours);
            rows.extend(jalv);
        }
        Err(e) => {
            rows.push(plugin.note(format!("no jalv rows: {e}")));
            rows.push(ours);
        }
    }
    Ok(rows)
}

/// jalv's start time and CPU with [`PLUGIN`], each compared with modsynth's row.
fn jalv_rows(
    server: &JackServer,
    starts: usize,
    create: &Row,
    cpu: &Row,
) -> Result<Vec<Row>, String> {
    let ports = modsynth_lv2::discover::find(PLUGIN)?
        .ports
        .iter()
        .filter(|p| {
            use modsynth_lv2::discover::PortKind::*;
            matches!(p.kind, AudioIn | AudioOut | CvIn | CvOut)
        })
        .count();
    let (watcher, _lease) = server.open_client("bench-lv2-watch")?.into_parts();
    let mut samples = Vec::new();
    let mut last = None;
    for i in 0..starts {
        let name = format!("jalv{i}");
        let t0 = Instant::now();
        let mut child = start_jalv(server, &name)?;
        let pattern = format!("^{name}:");
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let found = watcher
                .ports(Some(&pattern), None, jack::PortFlags::empty())
                .len();
            if found >= ports {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("jalv exited before its ports appeared: {status}"));
            }
            if Instant::now() > deadline {
                stop(&mut child);
                return Err(format!("jalv had {found} of {ports} ports after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        samples.push(ms(t0.elapsed()));
        if let Some(mut previous) = last.replace(child) {
            stop(&mut previous);
        }
    }
    let mut child = last.ok_or("no jalv started")?;
    // Playing for a moment before the window, like the worker.
    std::thread::sleep(Duration::from_millis(500));
    let load = Load::measure(server, &[child.id()]);
    stop(&mut child);
    let load = load?;
    let start = Row::new(format!("lv2_jalv_start_ms.{SHORT}"), "ms", samples);
    let theirs = Row::summary(
        format!("cpu_pct.lv2_jalv.{SHORT}"),
        "% core",
        load.cpu_pct,
        1,
    )
    .note(format!("{} xruns", load.xruns));
    // Ratios: ours over theirs.
    let create_vs = Row::summary(
        format!("lv2_create_vs_jalv_start.{SHORT}"),
        "x",
        create.median / start.median,
        create.n,
    );
    let cpu_vs = Row::summary(
        format!("lv2_cpu_vs_jalv.{SHORT}"),
        "x",
        if theirs.median > 0.0 {
            cpu.median / theirs.median
        } else {
            f64::NAN
        },
        1,
    );
    Ok(vec![start, theirs, create_vs, cpu_vs])
}

/// Starts `jalv` on this server as client `name`. Its console reads commands from
/// stdin and quits at end of file: the pipe stays open until [`stop`].
fn start_jalv(server: &JackServer, name: &str) -> Result<Child, String> {
    server
        .command("jalv")
        .args(["-x", "-n", name, PLUGIN])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => "jalv is not installed (scripts/setup installs it)".into(),
            _ => format!("cannot start jalv: {e}"),
        })
}

/// Ends a jalv: closing its stdin quits it; killed if it is still there after 5 s.
fn stop(child: &mut Child) {
    drop(child.stdin.take());
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
