//! Runs `modsynthd` on a private JACK server for a test, and talks OSC to it.

use crate::jack_server::JackServer;
use crate::workers::bin_path;
use modsynth_control::client::Client;
use modsynth_control::osc::{message, text};
use modsynth_control::status::{ModuleRole, ModuleStatus, StandbyWorker, StatusReport};
use rosc::OscType;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `modsynthd`, stopped with SIGTERM (and reaped) when dropped.
pub struct Supervisor {
    child: Option<Child>,
    /// Where it listens for OSC.
    pub osc: SocketAddr,
    /// Its instance name (workers are `<name>-wNN`).
    pub name: String,
    /// What it printed on stdout up to "pool ready".
    startup: Vec<String>,
    /// Its stderr so far, when started by [`Supervisor::start_named`].
    stderr: Option<Arc<Mutex<String>>>,
    /// Its sets dir: a private one under the temp dir (removed on drop) unless
    /// the test gave `--sets-dir`.
    pub sets_dir: std::path::PathBuf,
    own_sets_dir: bool,
}

/// A fresh instance name, unique among the instances this process starts (and
/// others', as it holds the pid): `t<pid>x<n>`.
pub fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Supervisor {
    /// Starts `modsynthd --pool <pool>` on `server` with a unique instance name and a
    /// free OSC port, and waits until its pool is ready.
    pub fn start(server: &JackServer, pool: usize) -> Result<Supervisor, String> {
        Supervisor::start_with(server, pool, &[])
    }

    /// Like [`Supervisor::start`], with more `modsynthd` arguments.
    pub fn start_with(
        server: &JackServer,
        pool: usize,
        extra: &[&str],
    ) -> Result<Supervisor, String> {
        Supervisor::launch(server, &unique_name(), pool, extra, false)
    }

    /// Like [`Supervisor::start_with`], under instance `name` (see [`unique_name`]),
    /// and with its stderr collected for [`Supervisor::stderr`] (and still shown).
    pub fn start_named(
        server: &JackServer,
        name: &str,
        pool: usize,
        extra: &[&str],
    ) -> Result<Supervisor, String> {
        Supervisor::launch(server, name, pool, extra, true)
    }

    fn launch(
        server: &JackServer,
        name: &str,
        pool: usize,
        extra: &[&str],
        collect_stderr: bool,
    ) -> Result<Supervisor, String> {
        let name = name.to_string();
        let given = extra
            .iter()
            .position(|a| *a == "--sets-dir")
            .and_then(|i| extra.get(i + 1));
        let own_sets_dir = given.is_none();
        let sets_dir = match given {
            Some(d) => std::path::PathBuf::from(d),
            None => std::env::temp_dir().join(format!("modsynth-test-sets-{name}")),
        };
        let mut command = server.command(bin_path("modsynthd")?);
        if own_sets_dir {
            command.arg("--sets-dir").arg(&sets_dir);
        }
        command
            .args([
                "--name",
                &name,
                "--pool",
                &pool.to_string(),
                "--osc-port",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        if collect_stderr {
            command.stderr(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start modsynthd: {e}"))?;
        let stderr = child.stderr.take().map(|pipe| {
            let collected = Arc::new(Mutex::new(String::new()));
            let sink = collected.clone();
            // Until every writer is gone: modsynthd and the workers it started.
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
            collected
        });
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut osc = None;
        let mut startup = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Read its start-up lines: the OSC address, then "pool ready".
        loop {
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("modsynthd did not report a ready pool within 20 s".into());
            }
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait();
                return Err(format!("modsynthd exited during start-up: {status:?}"));
            };
            startup.push(line.clone());
            if let Some(rest) = line.split(" OSC on ").nth(1) {
                let addr = rest.split(',').next().unwrap_or_default();
                osc = Some(
                    addr.parse::<SocketAddr>()
                        .map_err(|e| format!("bad address in '{line}': {e}"))?,
                );
            }
            if line.contains("pool ready") {
                break;
            }
        }
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let osc = osc.ok_or("modsynthd did not say where it listens")?;
        Ok(Supervisor {
            child: Some(child),
            osc,
            name,
            startup,
            stderr,
            sets_dir,
            own_sets_dir,
        })
    }

    /// What it printed on stdout during start-up, up to and with "pool ready".
    pub fn startup_output(&self) -> &[String] {
        &self.startup
    }

    /// Its stderr so far (empty unless started by [`Supervisor::start_named`]).
    pub fn stderr(&self) -> String {
        self.stderr.as_ref().map_or_else(String::new, |s| {
            s.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// A new OSC client for it.
    pub fn client(&self) -> Client {
        Client::new(self.osc).expect("a local UDP socket")
    }

    /// `/module/get id param`: the value in its `/module/value` reply (a float, or
    /// an enumerated parameter's name). Panics if the query fails.
    pub fn param_value(&self, id: &str, param: &str) -> OscType {
        let reply = self
            .client()
            .query(
                message("/module/get", vec![text(id), text(param)]),
                "/module/value",
            )
            .unwrap_or_else(|e| panic!("/module/get {id} {param}: {e}"));
        reply
            .args
            .get(2)
            .cloned()
            .unwrap_or_else(|| panic!("/module/get {id} {param}: no value in {reply:?}"))
    }

    /// `/module/new type id params...`, waiting for `/done`.
    pub fn new_module(
        &self,
        module_type: &str,
        id: &str,
        params: &[(&str, f32)],
    ) -> Result<(), String> {
        self.create(module_type, id, params, true)
    }

    /// `/module/new type id params... standby none`: a module without a hot
    /// standby, waiting for `/done`.
    pub fn new_module_without_standby(
        &self,
        module_type: &str,
        id: &str,
        params: &[(&str, f32)],
    ) -> Result<(), String> {
        self.create(module_type, id, params, false)
    }

    fn create(
        &self,
        module_type: &str,
        id: &str,
        params: &[(&str, f32)],
        standby: bool,
    ) -> Result<(), String> {
        let mut args = vec![text(module_type), text(id)];
        for (name, value) in params {
            args.push(text(name));
            args.push(OscType::Float(*value));
        }
        if !standby {
            args.extend([text("standby"), text("none")]);
        }
        self.client().call(message("/module/new", args)).map(|_| ())
    }

    /// `/patch/connect src dst`, waiting for `/done`.
    pub fn connect(&self, src: &str, dst: &str) -> Result<(), String> {
        self.client()
            .call(message("/patch/connect", vec![text(src), text(dst)]))
            .map(|_| ())
    }

    /// `/patch/disconnect src dst`, waiting for `/done`.
    pub fn disconnect(&self, src: &str, dst: &str) -> Result<(), String> {
        self.client()
            .call(message("/patch/disconnect", vec![text(src), text(dst)]))
            .map(|_| ())
    }

    /// `/module/set id param value` followed by `/sync`: returns once applied.
    pub fn set(&self, id: &str, param: &str, value: f32) -> Result<(), String> {
        self.client().call_then_sync(message(
            "/module/set",
            vec![text(id), text(param), OscType::Float(value)],
        ))
    }

    /// Its `/status`.
    pub fn status(&self) -> Result<StatusReport, String> {
        let reply = self
            .client()
            .query(message("/status", vec![]), "/status.reply")?;
        let Some(OscType::String(json)) = reply.args.first() else {
            return Err("an empty /status.reply".into());
        };
        serde_json::from_str(json).map_err(|e| format!("unreadable /status.reply: {e}"))
    }

    /// Module `id` as `/status` reports it.
    pub fn module_status(&self, id: &str) -> Option<ModuleStatus> {
        self.status().ok()?.modules.into_iter().find(|m| m.id == id)
    }

    /// Polls `/status` until `ready` holds for module `id` (panics after `within`).
    pub fn wait_for_module(
        &self,
        id: &str,
        within: Duration,
        ready: impl Fn(&ModuleStatus) -> bool,
    ) -> ModuleStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.module_status(id).filter(|m| ready(m)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "module {id} did not reach the expected state within {within:?}: {:?}",
                self.module_status(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/status` until the graph is quiet again: the pool is full and every
    /// playing module that wants a standby has a ready one (panics after `within`). Audio
    /// tests wait for this after a failover before they record: every worker that
    /// is still starting opens a JACK client and registers ports, and jackd2 skips
    /// cycles for every client meanwhile on a loaded machine.
    pub fn wait_until_settled(&self, within: Duration) -> StatusReport {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status();
            if let Ok(s) = status.as_ref() {
                let standbys_ready = s.modules.iter().all(|m| {
                    m.role != ModuleRole::Primary || !m.standby || m.standby_worker.is_some()
                });
                if s.spare_ready >= s.pool_size && standbys_ready {
                    return s.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the supervisor did not settle within {within:?}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILLs it, as a crash would, and reaps it. Its workers are left alone.
    pub fn sigkill(&mut self) -> Result<(), String> {
        let mut child = self.child.take().ok_or("already stopped")?;
        child
            .kill()
            .map_err(|e| format!("SIGKILL of modsynthd: {e}"))?;
        child.wait().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Stops it with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus, String> {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Stops it with `signal` (SIGTERM, SIGINT or SIGHUP all stop it cleanly)
    /// and waits for it to exit.
    pub fn stop_with(
        &mut self,
        signal: nix::sys::signal::Signal,
    ) -> Result<std::process::ExitStatus, String> {
        let mut child = self.child.take().ok_or("already stopped")?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("modsynthd did not stop within 15 s of {signal}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if self.own_sets_dir {
            let _ = std::fs::remove_dir_all(&self.sets_dir);
        }
    }
}

/// `/dev/shm` entries of instance `name` (`<name>-...`), without the leading slash.
pub fn segments_of(name: &str) -> Vec<String> {
    let prefix = format!("{name}-");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of the live workers of instance `name`: processes started as
/// `modsynth-worker --pool --client <name>-wNN`, found in `/proc` (zombies, whose
/// command line is empty, are not counted).
pub fn workers_of(name: &str) -> Vec<u32> {
    let prefix = format!("{name}-w");
    processes_whose_command_line(|args| {
        args.windows(2)
            .any(|w| w[0] == b"--client" && w[1].starts_with(prefix.as_bytes()))
    })
}

/// The `modsynthd` started with `flag value` on its command line (`--name live42`,
/// `--osc-port 57300`), if one runs: how a test finds the one a script started.
pub fn modsynthd_with(flag: &str, value: &str) -> Option<u32> {
    processes_whose_command_line(|args| {
        args.first().is_some_and(|a| a.ends_with(b"modsynthd"))
            && args
                .windows(2)
                .any(|w| w[0] == flag.as_bytes() && w[1] == value.as_bytes())
    })
    .first()
    .copied()
}

/// Pids of the processes in `/proc` whose arguments (`argv`, from `cmdline`)
/// `pick` says yes to. Zombies have an empty command line.
fn processes_whose_command_line(mut pick: impl FnMut(&[&[u8]]) -> bool) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            pick(&args)
        })
        .collect()
}

/// Where the open descriptors of process `pid` point (`/proc/<pid>/fd/*`).
pub fn descriptors_of(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// A module's standby, for tests that waited until it has one.
pub trait ReadyStandby {
    /// The module's ready hot standby; panics, naming the module, if it has none
    /// (a test asks only after waiting for one: see [`Supervisor::wait_for_module`]).
    fn ready_standby(&self) -> &StandbyWorker;
}

impl ReadyStandby for ModuleStatus {
    fn ready_standby(&self) -> &StandbyWorker {
        self.standby_worker
            .as_ref()
            .unwrap_or_else(|| panic!("module {} has no ready standby", self.id))
    }
}
