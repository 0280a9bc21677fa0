//! Finding the workers a dead supervisor of this instance left running, and taking
//! them back over new channels.
//!
//! Each pooled worker keeps an `IpcOneShotServer<Adoption>` open and publishes its
//! name on a card, `<state dir>/workers/<client>.json`, with its pid and start time.
//! A worker is adopted only if a pidfd opens for that pid and the process's start
//! time is the card's (a recycled pid is someone else), and if it answers the
//! [`Adoption`] with [`FromWorker::Adopted`] for that pid within
//! [`ADOPT_TIMEOUT`]. Cards of workers that are gone are removed. Workers on
//! another JACK server than this supervisor's are left alone.

use crate::core::{AdoptedWorker, WorkerId};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use modsynth_model::protocol::{Adoption, FromWorker, ToWorker, WorkerCard};
use modsynth_process::{jack_server_name, process_start_time};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the workers together may take to answer an adoption. A worker without
/// a supervisor answers at once; one that does not within this is not adopted.
pub const ADOPT_TIMEOUT: Duration = Duration::from_secs(3);

/// A worker taken back, with the channel its messages arrive on.
pub struct Found {
    /// The worker, for [`Core::adopt`](crate::core::Core::adopt).
    pub worker: AdoptedWorker,
    /// Where what it says arrives (read by the loop: see [`Poller::listen`](crate::event_loop::Poller::listen)).
    pub receiver: IpcReceiver<FromWorker>,
}

/// The worker id in a client name `<instance>-wNN`.
///
/// ```
/// use modsynth_supervisor::adoption::worker_id;
///
/// assert_eq!(worker_id("live-w07", "live"), Some(7));
/// assert_eq!(worker_id("live-2-w07", "live"), None);
/// assert_eq!(worker_id("live-wx", "live"), None);
/// ```
pub fn worker_id(client: &str, instance: &str) -> Option<WorkerId> {
    let n = client.strip_prefix(instance)?.strip_prefix("-w")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// What [`find`] found.
#[derive(Default)]
pub struct Finding {
    /// The workers taken back.
    pub found: Vec<Found>,
    /// The highest worker id of a live worker with a card, adopted or not: new
    /// workers are numbered above it, so that none is named like a worker that
    /// still has its JACK client (one that did not answer, say).
    pub highest_id: Option<WorkerId>,
}

/// Adopts every live worker of `instance` whose card is in `cards`.
pub fn find(cards: &Path, instance: &str) -> Finding {
    let Ok(entries) = std::fs::read_dir(cards) else {
        return Finding::default();
    };
    let mut highest_id: Option<WorkerId> = None;
    let mut asked = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let card: Option<WorkerCard> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok());
        let Some(card) = card else {
            tracing::warn!("{}: not a worker card; removed", path.display());
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let Some(id) = worker_id(&card.client, instance) else {
            tracing::warn!("{}: a card of another instance; removed", path.display());
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if card.jack_server != jack_server_name() {
            // It plays on another JACK server: not ours to take (nor its card).
            tracing::warn!(
                "worker {} (pid {}) plays on JACK server '{}', not '{}': left alone",
                card.client,
                card.pid,
                card.jack_server,
                jack_server_name()
            );
            continue;
        }
        if !is_who_the_card_says(&card) {
            tracing::info!(
                "worker {} (pid {}) is gone; its card removed",
                card.client,
                card.pid
            );
            let _ = std::fs::remove_file(&path);
            continue;
        }
        highest_id = highest_id.max(Some(id));
        match ask(&card) {
            Ok((commands, receiver)) => asked.push((id, card, commands, receiver)),
            Err(e) => tracing::warn!(
                "cannot reach worker {} (pid {}): {e}",
                card.client,
                card.pid
            ),
        }
    }
    let deadline = Instant::now() + ADOPT_TIMEOUT;
    let mut found = Vec::new();
    for (id, card, commands, receiver) in asked {
        let wait = deadline.saturating_duration_since(Instant::now());
        match receiver.try_recv_timeout(wait) {
            Ok(FromWorker::Adopted {
                pid,
                client,
                playing,
            }) if pid == card.pid && client == card.client => found.push(Found {
                worker: AdoptedWorker {
                    id,
                    pid,
                    client,
                    commands,
                    playing,
                },
                receiver,
            }),
            other => tracing::warn!(
                "worker {} (pid {}) did not answer its adoption: {other:?}",
                card.client,
                card.pid
            ),
        }
    }
    Finding { found, highest_id }
}

/// Whether the process the card names runs: a pidfd opens for its pid, and that
/// process started when the card says. The pidfd pins the process while its start
/// time is read, so a pid recycled in between cannot pass.
fn is_who_the_card_says(card: &WorkerCard) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(card.pid as i32) else {
        return false;
    };
    let Ok(_pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return false;
    };
    process_start_time(card.pid) == Some(card.start_time)
}

/// Sends the worker its [`Adoption`]: a new channel both ways.
fn ask(card: &WorkerCard) -> Result<(IpcSender<ToWorker>, IpcReceiver<FromWorker>), String> {
    let server = IpcSender::<Adoption>::connect(card.server.clone()).map_err(|e| e.to_string())?;
    let (commands, commands_rx) = ipc::channel::<ToWorker>().map_err(|e| e.to_string())?;
    let (supervisor, receiver) = ipc::channel::<FromWorker>().map_err(|e| e.to_string())?;
    server
        .send(Adoption {
            supervisor,
            commands: commands_rx,
        })
        .map_err(|e| e.to_string())?;
    Ok((commands, receiver))
}
