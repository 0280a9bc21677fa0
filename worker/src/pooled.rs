//! Pooled mode: a warm worker serving the supervisor.
//!
//! The JACK client is opened and activated before the worker says hello, so that when
//! the supervisor assigns a module the only costs left are registering its ports and
//! one message. The worker then serves [`ToWorker`] requests until the supervisor says
//! `Shutdown` or goes away (its channel closes), and exits cleanly either way.

use crate::engine::ParamChange;
use crate::jack_host::Host;
use ipc_channel::ipc::{self, IpcSender};
use modsynth_control::catalog;
use modsynth_control::protocol::{FromWorker, ToWorker, WorkerReport};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long the worker waits for its real-time thread before answering anyway.
const RT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a pooled worker with JACK client `client_name`, reporting to the supervisor's
/// one-shot server `server_name`.
pub fn run(client_name: &str, server_name: &str) -> Result<(), String> {
    let to_supervisor: IpcSender<FromWorker> = IpcSender::connect(server_name.to_string())
        .map_err(|e| format!("cannot reach the supervisor at {server_name}: {e}"))?;
    // If the server goes away the worker has nothing to serve: exit, as on Shutdown.
    let (shutdown_tx, shutdown_rx) = std::sync::mpsc::channel::<()>();
    let on_shutdown = Box::new(move || {
        let _ = shutdown_tx.send(());
    });
    let mut host = Host::open(client_name, on_shutdown).map_err(|e| e.to_string())?;
    host.keep_spare_ports()?;
    let (commands_tx, commands) = ipc::channel::<ToWorker>().map_err(|e| e.to_string())?;
    to_supervisor
        .send(FromWorker::Hello {
            pid: std::process::id(),
            client: client_name.to_string(),
            commands: commands_tx,
        })
        .map_err(|e| format!("cannot greet the supervisor: {e}"))?;

    let mut worker = Worker {
        host,
        sent: 0,
        cpu: CpuClock::now(),
    };
    loop {
        if shutdown_rx.try_recv().is_ok() {
            return Err("the JACK server shut down".into());
        }
        let message = match commands.try_recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(ipc_channel::TryRecvError::Empty) => continue,
            // The supervisor is gone: nobody will ever free this worker, so leave.
            Err(ipc_channel::TryRecvError::IpcError(_)) => break,
        };
        if matches!(message, ToWorker::Shutdown) {
            break;
        }
        if let Some(reply) = worker.handle(message) {
            if to_supervisor.send(reply).is_err() {
                break;
            }
        }
        // Off the critical path: the assignment has been answered.
        worker.host.tidy();
    }
    host = worker.host;
    host.close()
}

struct Worker {
    host: Host,
    /// Parameter changes handed to the real-time thread so far.
    sent: u64,
    cpu: CpuClock,
}

impl Worker {
    fn handle(&mut self, message: ToWorker) -> Option<FromWorker> {
        match message {
            ToWorker::Assign {
                token,
                id,
                module_type,
                params,
            } => {
                tracing::debug!("assign received");
                let result = match catalog::module(&module_type) {
                    Some(spec) => {
                        let params: Vec<(usize, f32)> =
                            params.iter().map(|&(i, v)| (i as usize, v)).collect();
                        self.host.assign(spec, &params, Some(&id))
                    }
                    None => Err(format!("no module type '{module_type}'")),
                };
                Some(FromWorker::Assigned { token, result })
            }
            ToWorker::SetParam {
                index,
                value,
                at,
                received,
            } => {
                let change = ParamChange {
                    index,
                    value,
                    at,
                    received: Some(received),
                };
                match self.host.controller().send_change(change) {
                    Ok(()) => self.sent += 1,
                    Err(e) => tracing::error!("parameter change lost: {e}"),
                }
                None
            }
            ToWorker::Sync { token } => {
                let stats = self.host.controller().stats().clone();
                let deadline = Instant::now() + RT_TIMEOUT;
                while stats.params_settled() < self.sent && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Some(FromWorker::Synced { token })
            }
            ToWorker::Free { token } => {
                if let Err(e) = self.host.free(RT_TIMEOUT) {
                    tracing::error!("free: {e}");
                }
                Some(FromWorker::Freed { token })
            }
            ToWorker::Report { token } => Some(FromWorker::Report {
                token,
                report: self.report(),
            }),
            ToWorker::Shutdown => None,
        }
    }

    fn report(&mut self) -> WorkerReport {
        let stats = self.host.controller().stats().clone();
        let client = self.host.client();
        WorkerReport {
            pid: std::process::id(),
            client: client.name().to_string(),
            cycles: stats.cycles.load(Ordering::Relaxed),
            xruns: self.host.events().xruns.load(Ordering::Relaxed),
            params_received: self.sent,
            params_applied: stats.params_applied.load(Ordering::Relaxed),
            latency_p50: stats.latency_percentile(50.0).unwrap_or(0),
            latency_p95: stats.latency_percentile(95.0).unwrap_or(0),
            latency_p99: stats.latency_percentile(99.0).unwrap_or(0),
            dsp_load: client.cpu_load(),
            cpu_percent: self.cpu.percent_since_last(),
            rss_kib: rss_kib(),
        }
    }
}

/// Process CPU time, to report CPU % between two reports.
struct CpuClock {
    wall: Instant,
    cpu: Duration,
}

impl CpuClock {
    fn now() -> CpuClock {
        CpuClock {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    fn percent_since_last(&mut self) -> f32 {
        let now = CpuClock::now();
        let wall = now.wall.duration_since(self.wall).as_secs_f64();
        let cpu = now.cpu.saturating_sub(self.cpu).as_secs_f64();
        *self = now;
        if wall > 0.0 {
            (100.0 * cpu / wall) as f32
        } else {
            0.0
        }
    }
}

fn process_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default()
}

/// Resident set size from /proc/self/statm, KiB (0 if unreadable).
pub fn rss_kib() -> u64 {
    let page_kib = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4, |b| b as u64 / 1024);
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page_kib)
}
