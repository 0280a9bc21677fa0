//! The sentinel: every worker watched through a pidfd in one epoll loop.
//!
//! A worker's death reaches the core two ways: its ipc channel closing (its reader
//! thread in [`spawn`](crate::spawn) sees the end of the stream) and its pidfd
//! becoming readable here. Whichever comes first makes the core fail the module over;
//! the core ignores the second. The sentinel also reads how the worker ended (exit
//! status or signal) without reaping it (`WNOWAIT`: the reader thread reaps), so the
//! core can say that a worker was SIGKILLed rather than that it "went away".
//!
//! ```no_run
//! use modsynth_supervisor::sentinel::Sentinel;
//!
//! let (events, deaths) = std::sync::mpsc::channel();
//! let sentinel = Sentinel::start(events).expect("epoll");
//! sentinel.watch(7, 4711); // worker 7 is pid 4711
//! // ... deaths.recv() gives Event::WorkerDied { id: 7, how: "killed by signal 9" }
//! # drop(deaths);
//! ```

use crate::core::{Event, WorkerId};
use rustix::event::epoll;
use rustix::fd::{AsFd, OwnedFd};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

/// Registers workers with the sentinel thread.
#[derive(Clone, Debug)]
pub struct Sentinel {
    watch: Sender<(WorkerId, u32)>,
    /// Wakes the thread to take new registrations (an eventfd in its epoll set).
    wake: Arc<OwnedFd>,
}

/// The epoll data of the wake-up eventfd (worker ids are below it).
const WAKE: u64 = u64::MAX;

impl Sentinel {
    /// Starts the sentinel thread; deaths arrive on `events` as
    /// [`Event::WorkerDied`].
    pub fn start(events: Sender<Event>) -> Result<Sentinel, String> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| format!("sentinel: epoll: {e}"))?;
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| format!("sentinel: eventfd: {e}"))?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )
        .map_err(|e| format!("sentinel: epoll add: {e}"))?;
        let wake = Arc::new(wake);
        let (watch, registrations) = mpsc::channel();
        let thread_wake = wake.clone();
        std::thread::Builder::new()
            .name("sentinel".into())
            .spawn(move || run(epoll, &thread_wake, registrations, events))
            .map_err(|e| format!("sentinel: thread: {e}"))?;
        Ok(Sentinel { watch, wake })
    }

    /// Watches worker `id`, process `pid`, until it dies.
    pub fn watch(&self, id: WorkerId, pid: u32) {
        if self.watch.send((id, pid)).is_ok() {
            let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        }
    }
}

fn run(
    epoll: OwnedFd,
    wake: &OwnedFd,
    registrations: Receiver<(WorkerId, u32)>,
    events: Sender<Event>,
) {
    let mut pidfds: HashMap<WorkerId, OwnedFd> = HashMap::new();
    let mut ready = Vec::with_capacity(16);
    loop {
        ready.clear();
        match epoll::wait(&epoll, rustix::buffer::spare_capacity(&mut ready), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!(
                    "sentinel: epoll_wait: {e}; deaths are seen by the ipc channels only"
                );
                return;
            }
        }
        for event in &ready {
            let key = event.data.u64();
            if key == WAKE {
                let mut count = [0u8; 8];
                let _ = rustix::io::read(wake, &mut count);
                for (id, pid) in registrations.try_iter() {
                    if let Some(fd) = open_pidfd(pid) {
                        if epoll::add(
                            &epoll,
                            &fd,
                            epoll::EventData::new_u64(id as u64),
                            epoll::EventFlags::IN,
                        )
                        .is_ok()
                        {
                            pidfds.insert(id, fd);
                        }
                    } else {
                        // Gone before it could be watched: that is a death too.
                        let _ = events.send(Event::WorkerDied {
                            id,
                            how: "exited before it was watched".into(),
                        });
                    }
                }
                continue;
            }
            let id = key as WorkerId;
            if let Some(fd) = pidfds.remove(&id) {
                let _ = epoll::delete(&epoll, &fd);
                let how = how_it_ended(&fd);
                if events.send(Event::WorkerDied { id, how }).is_err() {
                    return; // the core is gone
                }
            }
        }
    }
}

fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// "exited with status N" or "killed by signal N", read without reaping.
fn how_it_ended(pidfd: &OwnedFd) -> String {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), options) {
        Ok(Some(status)) => match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (_, Some(signal)) => format!("killed by signal {signal}"),
            _ => "ended".into(),
        },
        // Already reaped by its reader thread: the status went with it.
        _ => "ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    fn death(deaths: &Receiver<Event>) -> (WorkerId, String) {
        match deaths.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::WorkerDied { id, how }) => (id, how),
            other => panic!("no death reported: {other:?}"),
        }
    }

    #[test]
    fn a_killed_worker_is_reported_with_its_signal() {
        let (events, deaths) = mpsc::channel();
        let sentinel = Sentinel::start(events).unwrap();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        sentinel.watch(3, child.id());
        std::thread::sleep(Duration::from_millis(50));
        assert!(deaths.try_recv().is_err(), "alive is not dead");
        child.kill().unwrap();
        assert_eq!(death(&deaths), (3, "killed by signal 9".to_string()));
        child.wait().unwrap();
    }

    #[test]
    fn an_exit_status_is_reported_and_the_child_is_left_to_its_reaper() {
        let (events, deaths) = mpsc::channel();
        let sentinel = Sentinel::start(events).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "sleep 0.1; exit 3"])
            .spawn()
            .unwrap();
        sentinel.watch(4, child.id());
        assert_eq!(death(&deaths), (4, "exited with status 3".to_string()));
        assert_eq!(
            child.wait().unwrap().code(),
            Some(3),
            "not reaped by the sentinel"
        );
    }
}
