//! `modsynth`: the command line of modsynth.

use clap::{Parser, Subcommand};
use modsynth_control::capacity::{self, Capacity};
use modsynth_control::client::Client;
use modsynth_control::osc::{message, text};
use modsynth_control::status::StatusReport;
use modsynth_control::{plugins, record, reference, setfile};
use modsynth_model::catalog;
use rosc::OscType;
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod shm_cli;

#[derive(Parser)]
#[command(
    name = "modsynth",
    version,
    about = "Control a modsynth modular synthesizer"
)]
struct Cli {
    /// Where modsynthd listens (host:port).
    #[arg(
        long,
        global = true,
        env = "MODSYNTH_OSC",
        default_value = "127.0.0.1:57300"
    )]
    osc: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a module: `modsynth new vco vco1 freq=220 wave=saw`.
    New {
        #[arg(value_name = "TYPE")]
        module_type: String,
        id: String,
        /// Initial values; `standby=none` creates it without a hot standby.
        #[arg(value_name = "PARAM=VALUE")]
        params: Vec<String>,
    },
    /// Remove a module.
    Free { id: String },
    /// `set ID PARAM VALUE` sets a parameter (returns once applied);
    /// `set load FILE [--replace]` and `set save FILE` load and save set files
    /// (copied through modsynthd's sets dir; a bare name there works too);
    /// `set check FILE` checks one without a running modsynthd;
    /// `set prepare FILE [--as NAME]` builds a set silently beside what plays and
    /// `set switch NAME [--at TIME | --on-bar N] [--fade MS]` switches to it on one
    /// frame.
    #[command(
        override_usage = "modsynth set <ID> <PARAM> <VALUE>\n       modsynth set load <FILE> [--replace] [--atomic]\n       modsynth set save <FILE>\n       modsynth set check <FILE>\n       modsynth set prepare <FILE> [--as NAME]\n       modsynth set switch <NAME> [--at TIME | --on-bar N] [--fade MS]"
    )]
    Set {
        #[arg(required = true, num_args = 2..=3, value_name = "ARGS")]
        args: Vec<String>,
        /// With `load`: free running modules that are not in the file.
        #[arg(long)]
        replace: bool,
        /// With `load`: change nothing at all unless every module is created.
        #[arg(long)]
        atomic: bool,
        /// With `prepare`: the prepared set's name (default: the file's name
        /// without `.toml`).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// With `switch`: when, as Unix time in seconds (`1764630000.25`) or
        /// seconds from now (`+0.5`); default: at once (a few periods ahead).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        at: Option<String>,
        /// With `switch`: on the first frame of bar N of the playing `seq` (one
        /// bar = one pass through its `steps`; bar 1 is its first), or `+K`: the
        /// K-th bar to begin from now.
        #[arg(long = "on-bar", value_name = "N", conflicts_with = "at")]
        on_bar: Option<String>,
        /// With `switch`: crossfade in ms (default 5).
        #[arg(long, value_name = "MS")]
        fade: Option<u32>,
    },
    /// Print a parameter's value.
    Get { id: String, param: String },
    /// Connect two ports: `modsynth connect vco1:out system:playback_1`.
    Connect { src: String, dst: String },
    /// Disconnect two ports.
    Disconnect { src: String, dst: String },
    /// List the running modules.
    Ls,
    /// Print one line (`ADDRESS`) per OSC message to `ADDRESS` received on
    /// 127.0.0.1:`PORT`, until stopped: how `scripts/live` hears `/live/next`.
    Listen {
        port: u16,
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
    /// Show the pool, every module and its numbers.
    Status {
        /// Refresh every second until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Wait until everything sent before is applied.
    Sync,
    /// List module types with their ports and parameters.
    Modules {
        /// Only this module type.
        module: Option<String>,
        /// Print the Markdown reference (docs/modules.md) instead.
        #[arg(long)]
        markdown: bool,
    },
    /// List the installed LV2 plugins (URI, name, class, ports): each one is a
    /// module type `lv2:<URI>` (or `lv2:<last part of the URI>` when unique).
    Plugins {
        /// Only plugins whose URI, name or class contains this (any case).
        filter: Option<String>,
        /// Print JSON (every port, its range and hints) instead of one line each.
        #[arg(long)]
        json: bool,
        /// List the plugins modsynth cannot host too, with the reason.
        #[arg(long)]
        all: bool,
    },
    /// Record JACK ports into a 32-bit float WAV file, one channel per port.
    ///
    /// A port that is an input (like system:playback_1) records whatever is
    /// connected to it, following connections as they change.
    Record {
        /// The WAV file to write.
        out: PathBuf,
        /// Ports to record.
        #[arg(required = true, value_name = "PORT")]
        ports: Vec<String>,
        /// Stop after this many seconds (default: at Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
    },
    /// Map a MIDI CC to a parameter: `modsynth map 74 filt1 cutoff 100 8000 --curve exp`.
    ///
    /// CCs arrive at modsynthd's own MIDI input (`<instance>:midi_in`): connect the
    /// controller there. Without MIN MAX the parameter's whole range.
    Map {
        /// The controller number, 0..119.
        cc: u8,
        id: String,
        param: String,
        /// The value at CC 0 and at CC 127 (MIN above MAX turns the knob round).
        #[arg(num_args = 0..=2, value_name = "MIN MAX", allow_negative_numbers = true)]
        range: Vec<f32>,
        /// MIDI channel 1..16; 0 or none: every channel.
        #[arg(long, default_value_t = 0)]
        channel: u8,
        /// lin, or exp (equal ratios: frequencies; MIN and MAX above 0).
        #[arg(long, default_value = "lin")]
        curve: String,
    },
    /// Map the next CC moved on the controller to a parameter (waits up to 60 s).
    Learn {
        id: String,
        param: String,
        /// The value at CC 0 and at CC 127.
        #[arg(num_args = 0..=2, value_name = "MIN MAX", allow_negative_numbers = true)]
        range: Vec<f32>,
        /// lin or exp.
        #[arg(long, default_value = "lin")]
        curve: String,
    },
    /// Remove a parameter's CC map.
    Unmap { id: String, param: String },
    /// List the CC maps.
    Maps,
    /// Shared memory: list an instance's segments and leaks, or remove what
    /// instances that died left behind.
    Shm {
        #[command(subcommand)]
        command: ShmCommand,
    },
}

#[derive(Subcommand)]
enum ShmCommand {
    /// List an instance's segments (size, owner, registered or leaked) from its
    /// registry and /dev/shm; exit 1 if the instance has no registry.
    Ls {
        /// The instance (modsynthd --name).
        #[arg(long, default_value = "modsynth")]
        name: String,
        /// Its state dir, if modsynthd was started with --state-dir
        /// [default: $XDG_RUNTIME_DIR/modsynth/NAME, else /tmp/modsynth-UID/NAME].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the segments of every instance whose modsynthd is gone (crashed or
    /// killed); running instances are left alone.
    Gc,
}

fn main() -> ExitCode {
    modsynth_process::logging::init();
    // `lv2:<plugin>` types (new, set check, modules) resolve through lilv.
    modsynth_lv2::install();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("modsynth: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client(osc: &str) -> Result<Client, String> {
    let addr: SocketAddr = osc
        .to_socket_addrs()
        .map_err(|e| format!("--osc '{osc}' is not host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("--osc '{osc}' names no address"))?;
    // TCP when modsynthd offers it (it does, on its UDP port): nothing is lost
    // under load and `/status` may be any size; UDP otherwise.
    Client::connect(addr)
}

/// A command-line value as OSC: a number when it reads as one, else text.
fn value_arg(value: &str) -> OscType {
    match value.trim().parse::<f32>() {
        Ok(v) => OscType::Float(v),
        Err(_) => text(value),
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::New { module_type, id, params } => {
            let mut args = vec![text(&module_type), text(&id)];
            for p in &params {
                let (name, value) =
                    p.split_once('=').ok_or_else(|| format!("'{p}' is not PARAM=VALUE"))?;
                args.push(text(name.trim()));
                args.push(value_arg(value));
            }
            client(&cli.osc)?.call(message("/module/new", args))?;
            println!("{id}: created");
        }
        Command::Free { id } => {
            client(&cli.osc)?.call(message("/module/free", vec![text(&id)]))?;
            println!("{id}: freed");
        }
        Command::Set {
            args,
            replace,
            atomic,
            as_name,
            at,
            on_bar,
            fade,
        } => match (args.as_slice(), replace) {
            ([op, file], false) if op == "prepare" => {
                let client = client(&cli.osc)?.with_timeout(Duration::from_secs(30));
                let name = into_sets_dir(&client, file)?;
                let mut args = vec![text(&name)];
                if let Some(as_name) = &as_name {
                    args.push(text(as_name));
                }
                let reply = client.call(message("/set/prepare", args))?;
                let prepared = match reply.args.get(1) {
                    Some(OscType::String(n)) => n.clone(),
                    _ => name,
                };
                println!("{file}: prepared as {prepared}");
            }
            ([op, name], false) if op == "switch" => {
                let client = client(&cli.osc)?.with_timeout(Duration::from_secs(30));
                let mut args = vec![text(name)];
                if let Some(ms) = fade {
                    args.push(OscType::Int(ms.min(i32::MAX as u32) as i32));
                }
                if let Some(bar) = on_bar.as_deref() {
                    if fade.is_none() {
                        args.push(OscType::Int(modsynth_control::osc::DEFAULT_SWITCH_FADE_MS as i32));
                    }
                    let (keyword, n) = match bar.strip_prefix('+') {
                        Some(k) => ("next_bar", k),
                        None => ("bar", bar),
                    };
                    let n: i32 = n.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                        format!("--on-bar {bar}: give a bar number (3) or bars from now (+1)")
                    })?;
                    args.extend([text(keyword), OscType::Int(n)]);
                }
                let msg = message("/set/switch", args);
                let reply = match at.as_deref().map(switch_time).transpose()? {
                    Some(when) => client.call_at(msg, when)?,
                    None => client.call(msg)?,
                };
                match reply.args.get(2) {
                    Some(OscType::Int(frame)) => println!("{name}: playing from frame {}", *frame as u32),
                    _ => println!("{name}: playing"),
                }
            }
            ([id, param, value], false) => {
                let msg = message("/module/set", vec![text(id), text(param), value_arg(value)]);
                client(&cli.osc)?.call_then_sync(msg)?;
            }
            ([op, file], _) if op == "load" => {
                // Loading creates modules: give it the time a big set needs.
                let client = client(&cli.osc)?.with_timeout(Duration::from_secs(30));
                let name = into_sets_dir(&client, file)?;
                let args = vec![
                    text(&name),
                    OscType::Int(replace as i32),
                    OscType::Int(atomic as i32),
                ];
                client.call(message("/set/load", args))?;
                println!("{file}: loaded");
            }
            ([op, file], false) if op == "save" => {
                let client = client(&cli.osc)?;
                let path = std::path::Path::new(file);
                let name = set_name_of(path)?;
                client.call(message("/set/save", vec![text(&name)]))?;
                // modsynthd saves in its sets dir; the file the user named is a copy.
                let saved = sets_dir(&client)?.join(&name);
                if std::fs::canonicalize(&saved).ok() != std::fs::canonicalize(path).ok() {
                    let text = std::fs::read_to_string(&saved)
                        .map_err(|e| format!("{}: {e}", saved.display()))?;
                    setfile::save_atomically(path, &text)?;
                }
                println!("{file}: saved");
            }
            ([op, file], false) if op == "check" => {
                let set = setfile::load(std::path::Path::new(file)).map_err(|e| e.to_string())?;
                println!(
                    "{file}: {} module(s), {} connection(s), {} CC map(s), {} program set(s); jack driver={} rate={} period={}",
                    set.modules.len(),
                    set.connections.len(),
                    set.maps.len(),
                    set.midi.program_sets.len(),
                    set.jack.driver.as_deref().unwrap_or("auto"),
                    set.jack.rate.map_or("auto".into(), |r| r.to_string()),
                    set.jack.period.map_or("auto".into(), |p| p.to_string()),
                );
                let needs = Capacity::of(&set);
                println!(
                    "{file}: needs {} workers = JACK clients ({} modules, {} hot standbys); \
                     loads as assignments only from modsynthd --pool {} (default pool 8: \
                     the other {} start during the load, one JACK client open each)",
                    needs.jack_clients(),
                    needs.modules,
                    needs.standbys,
                    needs.pool_for_instant_load(8),
                    needs.jack_clients().saturating_sub(8),
                );
                let problems = needs.problems(capacity::DEFAULT_MAX_MODULES, 8);
                if !problems.is_empty() {
                    return Err(format!(
                        "{file}: does not fit a default modsynthd on jackd2: {}",
                        problems.join("; ")
                    ));
                }
            }
            _ => return Err("use `set ID PARAM VALUE`, `set load FILE [--replace] [--atomic]`, `set save FILE`, `set check FILE`, `set prepare FILE [--as NAME]` or `set switch NAME [--at TIME | --on-bar N] [--fade MS]`".into()),
        },
        Command::Get { id, param } => {
            let reply = client(&cli.osc)?.query(message("/module/get", vec![text(&id), text(&param)]), "/module/value")?;
            match reply.args.get(2) {
                Some(OscType::Float(v)) => println!("{v}"),
                Some(OscType::String(s)) => println!("{s}"),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Command::Connect { src, dst } => {
            client(&cli.osc)?.call(message("/patch/connect", vec![text(&src), text(&dst)]))?;
        }
        Command::Disconnect { src, dst } => {
            client(&cli.osc)?.call(message("/patch/disconnect", vec![text(&src), text(&dst)]))?;
        }
        Command::Listen { port, address } => listen(port, &address)?,
        Command::Ls => {
            let report = status(&client(&cli.osc)?)?;
            for m in &report.modules {
                println!("{:<16} {:<6} {}", m.id, m.module_type, m.jack_client);
            }
        }
        Command::Status { watch, json } => {
            let client = client(&cli.osc)?;
            let stop = stop_flag();
            loop {
                let report = status(&client)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    if watch && std::io::stdout().is_terminal() {
                        print!("\x1b[2J\x1b[H");
                    }
                    print!("{}", status_table(&report));
                }
                if !watch || wait_or_stop(&stop, Duration::from_secs(1)) {
                    break;
                }
            }
        }
        Command::Sync => client(&cli.osc)?.sync()?,
        Command::Modules { module, markdown } => {
            let only = match module.as_deref() {
                None => None,
                Some(name) => Some(catalog::lookup(name)?),
            };
            if markdown {
                print!("{}", reference::markdown());
            } else {
                print!("{}", reference::plain(only));
            }
        }
        Command::Plugins { filter, json, all } => {
            print!("{}", plugins::listing(filter.as_deref(), json, all)?)
        }
        Command::Record { out, ports, duration } => {
            record_command(&cli.osc, out, ports, duration)?
        }
        Command::Map { cc, id, param, range, channel, curve } => {
            let mut args = vec![OscType::Int(cc as i32), OscType::Int(channel as i32), text(&id), text(&param)];
            args.extend(range_args(&range)?);
            args.push(text(&curve));
            client(&cli.osc)?.call(message("/map/cc", args))?;
            let on = if channel == 0 { "any channel".to_string() } else { format!("channel {channel}") };
            println!("CC {cc} ({on}) -> {id}.{param}");
        }
        Command::Learn { id, param, range, curve } => {
            let mut args = vec![text(&id), text(&param)];
            args.extend(range_args(&range)?);
            args.push(text(&curve));
            let client = client(&cli.osc)?.with_timeout(Duration::from_secs(65));
            eprintln!("move a knob on the controller connected to modsynthd's midi_in...");
            let reply = client.call(message("/map/learn", args))?;
            match (reply.args.get(3), reply.args.get(4)) {
                (Some(OscType::Int(cc)), Some(OscType::Int(ch))) => {
                    println!("CC {cc} (channel {ch}) -> {id}.{param}")
                }
                _ => return Err(format!("unexpected reply {reply:?}")),
            }
        }
        Command::Unmap { id, param } => {
            client(&cli.osc)?.call(message("/map/unmap", vec![text(&id), text(&param)]))?;
            println!("{id}.{param}: unmapped");
        }
        Command::Maps => {
            let reply = client(&cli.osc)?.query(message("/map/list", vec![]), "/map/list.reply")?;
            for m in reply.args.chunks(7) {
                if let [OscType::Int(cc), OscType::Int(ch), OscType::String(id), OscType::String(param), OscType::Float(min), OscType::Float(max), OscType::String(curve)] = m {
                    let ch = if *ch == 0 { "any".to_string() } else { ch.to_string() };
                    println!("CC {cc:<3} channel {ch:<3} {id}.{param} {min}..{max} {curve}");
                }
            }
        }
        Command::Shm { command } => {
            return match command {
                ShmCommand::Ls { name, state_dir, json } => shm_cli::ls(&name, state_dir, json),
                ShmCommand::Gc => shm_cli::gc(),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `[MIN MAX]` of `map` and `learn` as OSC arguments: none or both.
fn range_args(range: &[f32]) -> Result<Vec<OscType>, String> {
    match range {
        [] => Ok(vec![]),
        [min, max] => Ok(vec![OscType::Float(*min), OscType::Float(*max)]),
        _ => Err("give both MIN and MAX, or neither".into()),
    }
}

/// `file` as an absolute path: the supervisor resolves paths from its own directory.
/// The sets directory of the modsynthd `client` talks to (`/set/dir`).
fn sets_dir(client: &Client) -> Result<PathBuf, String> {
    let reply = client.call(message("/set/dir", vec![]))?;
    match reply.args.get(1) {
        Some(OscType::String(dir)) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => Err("modsynthd did not say where its sets dir is".into()),
    }
}

/// The set name a file is saved or loaded under in the sets dir: its file name.
fn set_name_of(path: &std::path::Path) -> Result<String, String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    setfile::check_set_name(name)?;
    Ok(name.to_string())
}

/// `modsynth listen PORT ADDRESS`: a line on stdout for every message to `address`
/// (also inside bundles); anything else, malformed packets included, is ignored.
fn listen(port: u16, address: &str) -> Result<(), String> {
    use std::io::Write;
    let socket = std::net::UdpSocket::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let mut buf = vec![0u8; 65536];
    let mut out = std::io::stdout();
    loop {
        let n = socket.recv(&mut buf).map_err(|e| e.to_string())?;
        // Nesting first: a packet of bundles in bundles must not overflow the stack.
        if modsynth_control::packet::check_nesting(&buf[..n]).is_err() {
            continue;
        }
        let Ok((_, packet)) = rosc::decoder::decode_udp(&buf[..n]) else {
            continue;
        };
        let mut stack = vec![packet];
        while let Some(p) = stack.pop() {
            match p {
                rosc::OscPacket::Message(m) if m.addr == address => {
                    // A closed stdout (the reader is gone) ends the listener.
                    writeln!(out, "{address}")
                        .and_then(|()| out.flush())
                        .map_err(|e| e.to_string())?;
                }
                rosc::OscPacket::Message(_) => {}
                rosc::OscPacket::Bundle(b) => stack.extend(b.content.into_iter().rev()),
            }
        }
    }
}

/// The time `--at` names: Unix seconds, or `+SECONDS` from now.
fn switch_time(at: &str) -> Result<std::time::SystemTime, String> {
    let bad = || {
        format!("--at {at}: give Unix time in seconds (1764630000.25) or seconds from now (+0.5)")
    };
    let (relative, number) = match at.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, at),
    };
    let secs: f64 = number.parse().map_err(|_| bad())?;
    if !(0.0..=1e11).contains(&secs) {
        return Err(bad());
    }
    let offset = Duration::from_secs_f64(secs);
    Ok(if relative {
        std::time::SystemTime::now() + offset
    } else {
        std::time::UNIX_EPOCH + offset
    })
}

/// What `/set/load` is given for `file`: a set name in modsynthd's sets dir as
/// it is, or a file the user named, checked here (errors name the user's path)
/// and copied into the sets dir under its file name. modsynthd itself reads
/// nothing outside its sets dir.
fn into_sets_dir(client: &Client, file: &str) -> Result<String, String> {
    let path = std::path::Path::new(file);
    if setfile::check_set_name(file).is_ok() && !path.exists() {
        return Ok(file.to_string());
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{file}: {e}"))?;
    if !meta.is_file() || meta.len() > setfile::MAX_SET_FILE {
        return Err(format!(
            "{file}: not a set file (a regular file of at most 1 MiB)"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    setfile::parse(file, &text).map_err(|e| e.to_string())?;
    let name = set_name_of(path)?;
    let copy = sets_dir(client)?.join(&name);
    if std::fs::canonicalize(&copy).ok() != std::fs::canonicalize(path).ok() {
        setfile::save_atomically(&copy, &text)
            .map_err(|e| format!("{e} (copying {file} into modsynthd's sets dir)"))?;
    }
    Ok(name)
}

fn status(client: &Client) -> Result<StatusReport, String> {
    let reply = client.query(message("/status", vec![]), "/status.reply")?;
    match reply.args.first() {
        Some(OscType::String(json)) => {
            serde_json::from_str(json).map_err(|e| format!("unreadable /status.reply: {e}"))
        }
        _ => Err("empty /status.reply".into()),
    }
}

/// The status as a table a person reads at a glance.
fn status_table(r: &StatusReport) -> String {
    use std::fmt::Write;
    let c = &r.counters;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pool {}/{} spare, {} workers | creates {} (cold {}), create ms p50 {:.1} p99 {:.1}",
        r.spare_ready,
        r.pool_size,
        r.workers,
        c.creates,
        c.cold_creates,
        c.create_time_ms.p50,
        c.create_time_ms.p99
    );
    let _ = writeln!(
        out,
        "crashes {} | failovers {} (ms p50 {:.1} p99 {:.1}, silent frames p99 {:.0}) | replacements {} | fresh restarts {} | quarantined {} | rebuild ms p99 {:.0} | shm leaks {}",
        c.crash_count,
        c.failovers,
        c.failover_time_ms.p50,
        c.failover_time_ms.p99,
        c.failover_silent_frames.p99,
        c.replacements,
        c.fresh_restarts,
        c.quarantined,
        c.rebuild_time_ms.p99,
        c.shm_leaks
    );
    if r.standby_hosts > 0 || c.handbacks > 0 || c.host_spawn_failures > 0 {
        let _ = writeln!(
            out,
            "standby hosts {}, free seats {} | hand-backs {} | host start failures {}",
            r.standby_hosts, r.free_seats, c.handbacks, c.host_spawn_failures
        );
    }
    // What arrived over OSC and what was lost: a sender's drops and refusals are
    // worth seeing before the module table.
    let t = &r.traffic;
    let (mut received, mut refused, mut dropped) = (0, 0, 0);
    for s in t.sources.values() {
        received += s.received;
        refused += s.refused;
        dropped += s.dropped;
    }
    let _ = writeln!(
        out,
        "osc: {received} received, {refused} refused, {dropped} dropped (queue {}/{}), \
         {} dropped by the kernel, {} too far ahead, {} not allowed; {} sender(s)",
        t.queued,
        t.queue_limit,
        t.kernel_drops,
        t.far_future,
        t.not_allowed,
        t.sources.len()
    );
    let _ = writeln!(
        out,
        "{:<14} {:<6} {:<8} {:>7} {:<14} {:>9} {:>17} {:>5} {:>5} {:>6} {:>7}",
        "module",
        "type",
        "role",
        "pid",
        "jack client",
        "set/done",
        "lat p50/95/99 smp",
        "xrun",
        "dsp%",
        "cpu%",
        "rss KiB"
    );
    for m in &r.modules {
        let [p50, p95, p99] = m.latency_samples;
        let _ = writeln!(
            out,
            "{:<14} {:<6} {:<8} {:>7} {:<14} {:>9} {:>17} {:>5} {:>5.1} {:>6.1} {:>7}",
            m.id,
            m.module_type,
            m.role,
            m.pid,
            m.jack_client,
            format!("{}/{}", m.params.received, m.params.applied),
            format!("{p50}/{p95}/{p99}"),
            m.xruns,
            m.dsp_load,
            m.cpu_percent,
            m.rss_kib
        );
    }
    let late: Vec<&str> = r
        .modules
        .iter()
        .filter(|m| m.report_late)
        .map(|m| m.id.as_str())
        .collect();
    if !late.is_empty() {
        let _ = writeln!(
            out,
            "late: {}: their workers did not answer in time; their counters are from              their last report",
            late.join(", ")
        );
    }
    out
}

fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    stop
}

/// Sleeps up to `d`; true if a stop signal came.
fn wait_or_stop(stop: &AtomicBool, d: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while waited < d {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(step);
        waited += step;
    }
    stop.load(Ordering::SeqCst)
}

fn record_command(
    osc: &str,
    out: PathBuf,
    ports: Vec<String>,
    duration: Option<f64>,
) -> Result<(), String> {
    let duration = match duration {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(format!(
                "--duration must be a positive number of seconds, got {s}"
            ))
        }
        None => None,
    };
    let stop = stop_flag();
    // A live counter on a terminal; nothing in a log file.
    let tty = std::io::stderr().is_terminal();
    let progress = |s: f64| {
        if tty {
            eprint!("\rrecording {}: {s:.0} s", out.display())
        }
    };
    // Module ports are resolved by modsynthd, which knows the worker playing each:
    // PipeWire's JACK does not see the aliases (`echo1:out`) workers set. Without a
    // modsynthd (recording a plain JACK setup), names are used as they are.
    let mut supervisor = client(osc)
        .ok()
        .map(|c| c.with_timeout(Duration::from_millis(500)));
    let mut known: Option<(Instant, StatusReport)> = None;
    let resolve = move |name: &str| -> Option<String> {
        let fresh = known
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_millis(500));
        if !fresh {
            match supervisor.as_ref().map(status) {
                Some(Ok(report)) => known = Some((Instant::now(), report)),
                // No modsynthd answers: stop asking (each try waits for a timeout).
                Some(Err(_)) if known.is_none() => supervisor = None,
                _ => {}
            }
        }
        known.as_ref()?.1.real_port(name)
    };
    let sum = record::record(&out, &ports, duration, &stop, progress, resolve)?;
    eprintln!(
        "{}recorded {:.1} s, {} channel(s), peak {:.2} to {}{}",
        if tty { "\r" } else { "" },
        sum.frames as f64 / sum.sample_rate as f64,
        sum.channels,
        sum.peak,
        out.display(),
        if sum.dropped_frames > 0 {
            format!(
                " ({} frames DROPPED: the disk was too slow)",
                sum.dropped_frames
            )
        } else {
            String::new()
        }
    );
    if sum.server_stopped {
        eprintln!("the JACK server stopped during the recording: the file ends there");
    }
    Ok(())
}
