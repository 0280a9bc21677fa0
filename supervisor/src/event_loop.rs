//! The core's one poll loop: everything the supervisor waits for, in one epoll set
//! that the core's thread waits on.
//!
//! - the OSC UDP socket: read by the core's thread itself, so a datagram goes from
//!   the socket to [`Core::handle`](crate::core::Core::handle) with no hand-off;
//! - every worker's pidfd (the [`Sentinel`]): a death is seen by the thread that
//!   decides on it, which also reaps the worker if it is our child;
//! - every worker's ipc channel ([`Channels`]): what a worker says is read by the
//!   core's thread itself;
//! - the [`Inbox`]: an eventfd that the few threads that remain ring when they have
//!   put an event in it (JACK's notification thread, OSC-over-TCP readers, the
//!   spawners of new workers, the patchbay thread);
//! - the timers: the core says when it must wake next
//!   ([`Core::next_deadline`](crate::core::Core::next_deadline)), which is the
//!   wait's timeout.
//!
//! So a create crosses OSC socket -> core -> worker -> core, with no hand-off
//! between threads in the supervisor.
//!
//! Why epoll through `rustix` rather than `mio`: the loop has four kinds of source
//! and one thread; `rustix` is already what the pidfds are opened with, and mio's
//! portability buys nothing on a Linux-only daemon.
//!
//! ```
//! use modsynth_supervisor::core::Event;
//! use modsynth_supervisor::event_loop::{Inbox, Poller, Ready};
//! use std::time::Duration;
//!
//! let inbox = Inbox::new().unwrap();
//! let mut poller = Poller::new(&inbox, None).unwrap();
//! let events = inbox.sender();
//! std::thread::spawn(move || events.send(Event::PortsAppeared));
//! let mut ready = Vec::new();
//! while !ready.contains(&Ready::Inbox) {
//!     poller.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
//! }
//! assert!(matches!(inbox.drain().next(), Some(Event::PortsAppeared)));
//! ```

use crate::channels::{self, Channels};
use crate::core::{Event, WorkerId};
use crate::sentinel::Sentinel;
use ipc_channel::ipc::IpcReceiver;
use modsynth_model::protocol::FromWorker;
use rustix::event::{epoll, eventfd, EventfdFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// The epoll data of the inbox's eventfd (worker ids are below these).
const INBOX: u64 = u64::MAX;
/// The epoll data of the OSC UDP socket.
const OSC: u64 = u64::MAX - 1;

/// Events from threads other than the core's: a queue plus an eventfd that wakes
/// the loop.
pub struct Inbox {
    queue: Receiver<Event>,
    sender: EventSender,
}

/// Puts events in an [`Inbox`] and wakes its loop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSender {
    queue: Sender<Event>,
    /// The eventfd in the loop's epoll set.
    wake: Arc<OwnedFd>,
}

/// The inbox was dropped: the core's loop has ended.
#[derive(Debug, PartialEq, Eq)]
pub struct LoopGone;

impl EventSender {
    /// Queues `event` and wakes the loop. `Err` once the loop is gone (the
    /// supervisor is stopping): the sending thread should end.
    pub fn send(&self, event: Event) -> Result<(), LoopGone> {
        self.queue.send(event).map_err(|_| LoopGone)?;
        // The counter only has to be non-zero: a write fails only when it would
        // overflow (after 2^64 - 2 unread wake-ups), when it is non-zero anyway.
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        Ok(())
    }
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Result<Inbox, String> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| format!("event loop: eventfd: {e}"))?;
        let (queue_tx, queue) = mpsc::channel();
        Ok(Inbox {
            queue,
            sender: EventSender {
                queue: queue_tx,
                wake: Arc::new(wake),
            },
        })
    }

    /// A sender for another thread.
    pub fn sender(&self) -> EventSender {
        self.sender.clone()
    }

    /// Takes every event queued now (after the loop saw [`Ready::Inbox`]).
    pub fn drain(&self) -> impl Iterator<Item = Event> + '_ {
        let mut count = [0u8; 8];
        // Reset before reading the queue: an event queued after this read rings
        // again, so none can be left behind unseen.
        let _ = rustix::io::read(&*self.sender.wake, &mut count);
        self.queue.try_iter()
    }
}

/// What woke the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Events wait in the inbox.
    Inbox,
    /// Datagrams wait on the OSC socket.
    Osc,
    /// Worker `id`'s channel has something to read ([`Poller::read_channel`]).
    Said(WorkerId),
    /// A watched worker's process ended (`how`: exit status or signal); reaped if
    /// it was our child.
    Died {
        /// The worker's number.
        id: WorkerId,
        /// Exit status or signal.
        how: String,
    },
}

/// The epoll set, and the pidfds and worker channels in it.
pub struct Poller {
    epoll: OwnedFd,
    sentinel: Sentinel,
    channels: Channels,
    events: Vec<epoll::Event>,
}

impl Poller {
    /// An epoll set with `inbox` and, when given, the OSC socket `osc` in it (the
    /// socket must be non-blocking: it is read until it has nothing more).
    pub fn new(inbox: &Inbox, osc: Option<BorrowedFd<'_>>) -> Result<Poller, String> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| format!("event loop: epoll: {e}"))?;
        let add = |fd: BorrowedFd<'_>, key| {
            epoll::add(
                &epoll,
                fd,
                epoll::EventData::new_u64(key),
                epoll::EventFlags::IN,
            )
            .map_err(|e| format!("event loop: epoll add: {e}"))
        };
        add(inbox.sender.wake.as_fd(), INBOX)?;
        if let Some(osc) = osc {
            add(osc, OSC)?;
        }
        Ok(Poller {
            epoll,
            sentinel: Sentinel::default(),
            channels: Channels::default(),
            events: Vec::with_capacity(64),
        })
    }

    /// Watches worker `id`, process `pid`, until it ends. A process that is gone
    /// already (and not our child, so not a zombie) is reported as dead at once.
    pub fn watch(&mut self, id: WorkerId, pid: u32) -> Option<Ready> {
        self.sentinel.watch(&self.epoll, id, pid)
    }

    /// Reads what worker `id` says from now on ([`Ready::Said`]), until its channel
    /// closes. `Err`: the channel cannot be waited on; the worker must be treated
    /// as gone.
    pub fn listen(
        &mut self,
        id: WorkerId,
        receiver: IpcReceiver<FromWorker>,
    ) -> Result<(), String> {
        self.channels.add(&self.epoll, id, receiver)
    }

    /// Puts what worker `id` said in `said` (after [`Ready::Said`]): its messages,
    /// then [`Event::WorkerGone`] if its channel closed or sent what does not decode.
    pub fn read_channel(&mut self, id: WorkerId, said: &mut Vec<Event>) {
        self.channels.read(&self.epoll, id, said);
    }

    /// Waits until something is ready or `timeout` passes (`None`: no limit), and
    /// puts what is ready in `ready` (cleared first).
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        ready: &mut Vec<Ready>,
    ) -> Result<(), String> {
        ready.clear();
        self.events.clear();
        let timeout = timeout.map(|t| {
            // Rounded up: waking a little late costs nothing, waking early spins.
            let t = t + Duration::from_nanos(999_999);
            rustix::event::Timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: (t.subsec_millis() * 1_000_000) as _,
            }
        });
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            timeout.as_ref(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(format!("event loop: epoll_wait: {e}")),
        }
        for event in &self.events {
            match event.data.u64() {
                INBOX => ready.push(Ready::Inbox),
                OSC => ready.push(Ready::Osc),
                key => {
                    if let Some(id) = channels::worker_of(key) {
                        ready.push(Ready::Said(id));
                        continue;
                    }
                    let id = key as WorkerId;
                    if let Some(how) = self.sentinel.ended(&self.epoll, id) {
                        ready.push(Ready::Died { id, how });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    fn wait_for(poller: &mut Poller, want: impl Fn(&Ready) -> bool) -> Ready {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ready = Vec::new();
        while Instant::now() < deadline {
            poller
                .wait(Some(Duration::from_millis(100)), &mut ready)
                .unwrap();
            if let Some(r) = ready.iter().find(|r| want(r)) {
                return r.clone();
            }
        }
        panic!("nothing ready in 5 s");
    }

    #[test]
    fn an_event_from_another_thread_wakes_the_loop_and_is_drained_once() {
        let inbox = Inbox::new().unwrap();
        let mut poller = Poller::new(&inbox, None).unwrap();
        let events = inbox.sender();
        std::thread::spawn(move || {
            events.send(Event::PortsAppeared).unwrap();
            events.send(Event::ShmLeaks(3)).unwrap();
        });
        wait_for(&mut poller, |r| *r == Ready::Inbox);
        // Both may not be there yet at the first wake-up; whatever is left rings.
        let mut got = inbox.drain().count();
        while got < 2 {
            wait_for(&mut poller, |r| *r == Ready::Inbox);
            got += inbox.drain().count();
        }
        let mut ready = Vec::new();
        poller
            .wait(Some(Duration::from_millis(20)), &mut ready)
            .unwrap();
        assert!(ready.is_empty(), "drained: nothing rings any more");
    }

    #[test]
    fn what_a_worker_says_wakes_the_loop_and_is_read_by_it() {
        let inbox = Inbox::new().unwrap();
        let mut poller = Poller::new(&inbox, None).unwrap();
        let (worker, receiver) = ipc_channel::ipc::channel::<FromWorker>().unwrap();
        poller.listen(8, receiver).unwrap();
        worker.send(FromWorker::Promoted).unwrap();
        let said_something = |r: &Ready| matches!(r, Ready::Said(_));
        assert_eq!(wait_for(&mut poller, said_something), Ready::Said(8));
        let mut said = Vec::new();
        poller.read_channel(8, &mut said);
        assert!(matches!(
            said[..],
            [Event::FromWorker(8, FromWorker::Promoted)]
        ));
        drop(worker);
        assert_eq!(wait_for(&mut poller, said_something), Ready::Said(8));
        said.clear();
        poller.read_channel(8, &mut said);
        assert!(matches!(said[..], [Event::WorkerGone(8)]));
    }

    #[test]
    fn a_sender_knows_when_the_loop_is_gone() {
        let inbox = Inbox::new().unwrap();
        let events = inbox.sender();
        drop(inbox);
        assert_eq!(events.send(Event::PortsAppeared), Err(LoopGone));
    }

    #[test]
    fn a_killed_child_is_reported_with_its_signal_and_reaped() {
        let inbox = Inbox::new().unwrap();
        let mut poller = Poller::new(&inbox, None).unwrap();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert_eq!(poller.watch(3, child.id()), None);
        let mut ready = Vec::new();
        poller
            .wait(Some(Duration::from_millis(50)), &mut ready)
            .unwrap();
        assert!(ready.is_empty(), "alive is not dead");
        child.kill().unwrap();
        let died = wait_for(&mut poller, |r| matches!(r, Ready::Died { .. }));
        assert_eq!(
            died,
            Ready::Died {
                id: 3,
                how: "killed by signal 9".into()
            }
        );
        // Reaped by the loop: nothing is left for anyone to wait for.
        assert!(child.try_wait().is_err(), "already reaped");
    }

    #[test]
    fn an_exit_status_is_reported() {
        let inbox = Inbox::new().unwrap();
        let mut poller = Poller::new(&inbox, None).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "sleep 0.1; exit 3"])
            .spawn()
            .unwrap();
        assert_eq!(poller.watch(4, child.id()), None);
        let died = wait_for(&mut poller, |r| matches!(r, Ready::Died { .. }));
        assert_eq!(
            died,
            Ready::Died {
                id: 4,
                how: "exited with status 3".into()
            }
        );
        assert!(child.try_wait().is_err(), "already reaped");
    }

    #[test]
    fn a_process_gone_before_it_is_watched_is_dead_at_once() {
        let inbox = Inbox::new().unwrap();
        let mut poller = Poller::new(&inbox, None).unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap(); // reaped: the pid names nobody now
        assert!(matches!(
            poller.watch(5, pid),
            Some(Ready::Died { id: 5, .. })
        ));
    }
}
