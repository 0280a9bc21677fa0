//! The workers' ipc channels, in the core's own epoll set: what a worker says goes
//! from its socket to the core's thread with no other thread in between.
//!
//! Each worker's channel (an `IpcReceiver<FromWorker>`, a `SOCK_SEQPACKET` unix
//! socket on Linux) is added to the loop's epoll set, level-triggered. When one is
//! readable the loop reads it on the spot: at most [`READS_PER_WAKE`] messages, so
//! one chatty worker cannot hold the others (what is left keeps the socket
//! readable and is read at the next wake-up). A channel that closes is a worker
//! gone ([`Event::WorkerGone`]); a message that does not decode (a worker that is
//! not what it claims, or another build) is hostile input: it is logged, the
//! worker is treated as gone and its channel is not read again.
//!
//! ## The descriptor
//!
//! `ipc-channel` 0.23 (the card's transport) has no accessor for a receiver's
//! descriptor; without one a receiver can only be waited on by an
//! `IpcReceiverSet`, which blocks in its own epoll, so a thread had to sit in it and
//! hand every message on (the `links` hop, up to 4 ms on this 2-core machine). The
//! receiver's `Debug` output shows its one field, the descriptor
//! (`OsIpcReceiver { fd: Cell { value: 7 } }`): [`receiver_fd`] reads it from
//! there and checks that it is what such a channel is, a `SOCK_SEQPACKET` socket of
//! this process. The version is pinned in `Cargo.lock`, and a unit test pins the
//! format, so a release that prints it otherwise fails the tests, not a running
//! supervisor; at run time a receiver whose descriptor cannot be found is refused
//! like any unreadable worker.
//!
//! ```
//! use modsynth_supervisor::channels::Channels;
//! use modsynth_supervisor::core::Event;
//! use modsynth_model::protocol::FromWorker;
//! use rustix::event::epoll;
//!
//! let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
//! let mut channels = Channels::default();
//! let (worker, receiver) = ipc_channel::ipc::channel::<FromWorker>().unwrap();
//! channels.add(&epoll, 7, receiver).unwrap();
//! worker.send(FromWorker::Promoted).unwrap();
//! let mut said = Vec::new();
//! channels.read(&epoll, 7, &mut said);
//! assert!(matches!(said[..], [Event::FromWorker(7, FromWorker::Promoted)]));
//! ```

use crate::core::{Event, WorkerId};
use ipc_channel::ipc::IpcReceiver;
use ipc_channel::{IpcError, TryRecvError};
use modsynth_model::protocol::FromWorker;
use rustix::event::epoll;
use rustix::fd::{BorrowedFd, OwnedFd, RawFd};
use std::collections::HashMap;

/// The most messages read from one channel per wake-up of the loop.
pub const READS_PER_WAKE: usize = 64;

/// The epoll data of worker `id`'s channel: above every pidfd's (a worker id, below
/// 2^32) and below the loop's own sources (near `u64::MAX`).
pub fn key(id: WorkerId) -> u64 {
    (1u64 << 32) | u64::from(id)
}

/// The worker whose channel has epoll data `key`, if it is a channel's.
pub fn worker_of(key: u64) -> Option<WorkerId> {
    (key >> 32 == 1).then_some(key as WorkerId)
}

/// The channels in the loop's epoll set, by worker id.
#[derive(Default, Debug)]
pub struct Channels {
    open: HashMap<WorkerId, (IpcReceiver<FromWorker>, RawFd)>,
}

impl Channels {
    /// Reads worker `id`'s channel from now on (in `epoll`, under [`key`]), until
    /// it closes. A channel whose descriptor cannot be found or added is refused:
    /// `Err` says why, and the caller treats the worker as gone.
    pub fn add(
        &mut self,
        epoll: &OwnedFd,
        id: WorkerId,
        receiver: IpcReceiver<FromWorker>,
    ) -> Result<(), String> {
        let fd = receiver_fd(&receiver)
            .ok_or_else(|| format!("worker {id}: its channel's descriptor is not readable"))?;
        // SAFETY: `fd` is open and owned by `receiver` (checked by `receiver_fd`),
        // which lives in `self.open` for as long as it is in the epoll set: it is
        // deleted from the set before the receiver is dropped (`close`).
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        epoll::add(
            epoll,
            borrowed,
            epoll::EventData::new_u64(key(id)),
            epoll::EventFlags::IN,
        )
        .map_err(|e| format!("worker {id}: cannot wait on its channel: {e}"))?;
        // An id added twice (cannot happen) keeps the newer channel.
        self.close(epoll, id);
        self.open.insert(id, (receiver, fd));
        Ok(())
    }

    /// Worker `id`'s channel is readable: puts what it said in `said` (at most
    /// [`READS_PER_WAKE`] messages), then [`Event::WorkerGone`] if it closed or
    /// sent what does not decode. An id not read any more is ignored.
    pub fn read(&mut self, epoll: &OwnedFd, id: WorkerId, said: &mut Vec<Event>) {
        let Some((receiver, _)) = self.open.get(&id) else {
            return;
        };
        for _ in 0..READS_PER_WAKE {
            match receiver.try_recv() {
                Ok(msg) => {
                    tracing::trace!("worker {id} said {msg:?}");
                    said.push(Event::FromWorker(id, msg));
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => {
                    self.close(epoll, id);
                    said.push(Event::WorkerGone(id));
                    return;
                }
                Err(TryRecvError::IpcError(e)) => {
                    tracing::warn!(
                        "worker {id} sent a message that does not decode ({e:?}): treated as gone"
                    );
                    self.close(epoll, id);
                    said.push(Event::WorkerGone(id));
                    return;
                }
            }
        }
    }

    /// Whether no channel is read.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn close(&mut self, epoll: &OwnedFd, id: WorkerId) {
        if let Some((receiver, fd)) = self.open.remove(&id) {
            // SAFETY: `receiver` still owns `fd` (it is dropped after this line).
            let _ = epoll::delete(epoll, unsafe { BorrowedFd::borrow_raw(fd) });
            drop(receiver);
        }
    }
}

/// The descriptor of `receiver`, read from its `Debug` output (see the module
/// docs), if it is an open `SOCK_SEQPACKET` socket of this process.
pub fn receiver_fd<T: std::fmt::Debug>(receiver: &IpcReceiver<T>) -> Option<RawFd> {
    let shown = format!("{receiver:?}");
    let (_, after) = shown.split_once("fd: Cell { value: ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    // Digits only: a closed receiver's -1 does not parse.
    let fd: RawFd = digits.parse().ok()?;
    // SAFETY: only used for the check below, while `receiver` (which owns the
    // descriptor if the number is right) is borrowed; a wrong number that names
    // no open descriptor makes the call fail with EBADF, nothing worse.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    // SO_TYPE answers only for a socket (ENOTSOCK otherwise).
    let seqpacket =
        rustix::net::sockopt::socket_type(borrowed).ok()? == rustix::net::SocketType::SEQPACKET;
    seqpacket.then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_channel::ipc;

    fn epoll_set() -> OwnedFd {
        epoll::create(epoll::CreateFlags::CLOEXEC).unwrap()
    }

    /// Waits up to 2 s for a readable channel; its key.
    fn ready(epoll: &OwnedFd) -> Option<u64> {
        let mut events = Vec::with_capacity(8);
        let timeout = rustix::event::Timespec {
            tv_sec: 2,
            tv_nsec: 0,
        };
        epoll::wait(
            epoll,
            rustix::buffer::spare_capacity(&mut events),
            Some(&timeout),
        )
        .unwrap();
        events.first().map(|e| e.data.u64())
    }

    #[test]
    fn the_descriptor_of_an_ipc_channel_receiver_is_found() {
        // Pins ipc-channel's Debug output: an upgrade that changes it fails here.
        let (sender, receiver) = ipc::channel::<FromWorker>().unwrap();
        let (_s, other) = ipc::channel::<FromWorker>().unwrap();
        let fd = receiver_fd(&receiver).expect("found");
        assert_ne!(Some(fd), receiver_fd(&other));
        // It is the receiver's: readable exactly when a message waits.
        let readable = || {
            // SAFETY: `receiver` owns `fd` for the whole test.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let mut fds = [rustix::event::PollFd::new(
                &borrowed,
                rustix::event::PollFlags::IN,
            )];
            rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())).unwrap() == 1
        };
        assert!(!readable());
        sender.send(FromWorker::Promoted).unwrap();
        assert!(readable());
        assert!(matches!(receiver.try_recv(), Ok(FromWorker::Promoted)));
        assert!(!readable());
    }

    #[test]
    fn what_a_worker_says_wakes_the_loop_and_is_read_in_order() {
        let epoll = epoll_set();
        let mut channels = Channels::default();
        let (a, from_a) = ipc::channel::<FromWorker>().unwrap();
        let (b, from_b) = ipc::channel::<FromWorker>().unwrap();
        channels.add(&epoll, 1, from_a).unwrap();
        channels.add(&epoll, 2, from_b).unwrap();
        b.send(FromWorker::Promoted).unwrap();
        b.send(FromWorker::Synced { token: 4 }).unwrap();
        assert_eq!(ready(&epoll).and_then(worker_of), Some(2));
        let mut said = Vec::new();
        channels.read(&epoll, 2, &mut said);
        assert!(matches!(
            said[..],
            [
                Event::FromWorker(2, FromWorker::Promoted),
                Event::FromWorker(2, FromWorker::Synced { token: 4 })
            ]
        ));
        a.send(FromWorker::Synced { token: 9 }).unwrap();
        assert_eq!(ready(&epoll).and_then(worker_of), Some(1));
        said.clear();
        channels.read(&epoll, 1, &mut said);
        assert!(matches!(
            said[..],
            [Event::FromWorker(1, FromWorker::Synced { token: 9 })]
        ));
    }

    #[test]
    fn a_closed_channel_is_a_worker_gone_once_and_leaves_the_set() {
        let epoll = epoll_set();
        let mut channels = Channels::default();
        let (a, from_a) = ipc::channel::<FromWorker>().unwrap();
        channels.add(&epoll, 3, from_a).unwrap();
        a.send(FromWorker::Promoted).unwrap();
        drop(a);
        assert_eq!(ready(&epoll).and_then(worker_of), Some(3));
        let mut said = Vec::new();
        channels.read(&epoll, 3, &mut said);
        assert!(matches!(
            said[..],
            [
                Event::FromWorker(3, FromWorker::Promoted),
                Event::WorkerGone(3)
            ]
        ));
        assert!(channels.is_empty());
        // Out of the epoll set: nothing rings any more.
        let mut events = Vec::with_capacity(4);
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        epoll::wait(
            &epoll,
            rustix::buffer::spare_capacity(&mut events),
            Some(&timeout),
        )
        .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn a_worker_that_sends_garbage_is_gone_once_and_not_read_again() {
        let epoll = epoll_set();
        let mut channels = Channels::default();
        // Same channel, another type: what arrives does not decode as FromWorker.
        let (garbage, receiver) = ipc::channel::<Vec<u8>>().unwrap();
        let receiver: IpcReceiver<FromWorker> = receiver.to_opaque().to();
        channels.add(&epoll, 5, receiver).unwrap();
        garbage.send(vec![0xff; 64]).unwrap();
        garbage.send(vec![0xff; 64]).unwrap();
        assert_eq!(ready(&epoll).and_then(worker_of), Some(5));
        let mut said = Vec::new();
        channels.read(&epoll, 5, &mut said);
        assert!(matches!(said[..], [Event::WorkerGone(5)]));
        said.clear();
        channels.read(&epoll, 5, &mut said);
        assert!(said.is_empty(), "not read again");
        assert!(channels.is_empty());
    }

    #[test]
    fn a_chatty_worker_is_read_a_bounded_number_of_messages_per_wake() {
        let epoll = epoll_set();
        let mut channels = Channels::default();
        let (a, from_a) = ipc::channel::<FromWorker>().unwrap();
        channels.add(&epoll, 6, from_a).unwrap();
        for token in 0..(READS_PER_WAKE as u64 + 10) {
            a.send(FromWorker::Synced { token }).unwrap();
        }
        let mut said = Vec::new();
        channels.read(&epoll, 6, &mut said);
        assert_eq!(said.len(), READS_PER_WAKE);
        // The rest keeps the channel readable.
        assert_eq!(ready(&epoll).and_then(worker_of), Some(6));
        said.clear();
        channels.read(&epoll, 6, &mut said);
        assert_eq!(said.len(), 10);
    }

    #[test]
    fn channel_keys_do_not_meet_pidfd_or_loop_keys() {
        assert_eq!(worker_of(key(0)), Some(0));
        assert_eq!(worker_of(key(u32::MAX)), Some(u32::MAX));
        assert_eq!(worker_of(u64::from(7u32)), None, "a pidfd's key");
        assert_eq!(worker_of(u64::MAX), None);
        assert_eq!(worker_of(u64::MAX - 1), None);
    }
}
