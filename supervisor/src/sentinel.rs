//! The sentinel: every worker's pidfd in the core's poll loop.
//!
//! A worker's death reaches the core two ways: its ipc channel closing (the
//! loop's [`Channels`](crate::channels::Channels) read the end of the stream) and
//! its pidfd becoming readable in the loop's epoll set. Whichever comes first makes the core fail the module over;
//! the core ignores the second. When the pidfd says the process ended, the sentinel
//! reads how (exit status or signal) and reaps it in the same call if it is our
//! child, so no zombie is left and its pid is not reused while the core still knows
//! it; a worker adopted from an earlier supervisor is not our child, and only its
//! end is seen.
//!
//! The loop ([`Poller`](crate::event_loop::Poller)) owns the epoll set; the sentinel
//! owns the pidfds in it. Its behaviour is tested through the loop.

use crate::core::WorkerId;
use crate::event_loop::Ready;
use rustix::event::epoll;
use rustix::fd::{AsFd, OwnedFd};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use std::collections::HashMap;

/// The pidfds of the workers watched, by worker id.
#[derive(Default, Debug)]
pub struct Sentinel {
    pidfds: HashMap<WorkerId, OwnedFd>,
}

impl Sentinel {
    /// Adds worker `id`, process `pid`, to `epoll` (data: the worker id). A process
    /// that cannot be watched (gone and reaped already) is dead: `Some`.
    pub fn watch(&mut self, epoll: &OwnedFd, id: WorkerId, pid: u32) -> Option<Ready> {
        let died = || Ready::Died {
            id,
            how: "exited before it was watched".into(),
        };
        let Some(fd) = open_pidfd(pid) else {
            return Some(died());
        };
        let data = epoll::EventData::new_u64(u64::from(id));
        if epoll::add(epoll, &fd, data, epoll::EventFlags::IN).is_err() {
            // Only on a full kernel table: its ipc channel still tells its end.
            tracing::warn!("cannot watch worker {id} (pid {pid}) through its pidfd");
            return None;
        }
        // A worker id watched twice (cannot happen) keeps the newer process.
        if let Some(old) = self.pidfds.insert(id, fd) {
            let _ = epoll::delete(epoll, &old);
        }
        None
    }

    /// Worker `id`'s pidfd became readable: its process ended. Stops watching it
    /// and says how it ended (`None`: not watched, an event left over).
    pub fn ended(&mut self, epoll: &OwnedFd, id: WorkerId) -> Option<String> {
        let fd = self.pidfds.remove(&id)?;
        let _ = epoll::delete(epoll, &fd);
        Some(reap(&fd))
    }
}

fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// "exited with status N" or "killed by signal N", reaping the process if it is
/// our child ("ended" for one that is not: its status is its parent's).
fn reap(pidfd: &OwnedFd) -> String {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), options) {
        Ok(Some(status)) => match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (_, Some(signal)) => format!("killed by signal {signal}"),
            _ => "ended".into(),
        },
        _ => "ended".into(),
    }
}
