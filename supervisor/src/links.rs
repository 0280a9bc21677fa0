//! The worker channels' reader: one thread waits on every worker's ipc channel at
//! once (an `IpcReceiverSet`) and puts what they say in the core's inbox.
//!
//! One thread for all workers, not one per worker: 64 modules with standbys and
//! the pool are some 140 workers, and each reader thread was one more thread to
//! wake per message. It is not the core's own thread only because `ipc-channel`
//! (0.23) keeps a receiver's descriptor to itself, so the channels cannot join the
//! core's epoll set (see [`event_loop`](crate::event_loop)).
//!
//! What arrives becomes [`Event::FromWorker`]; a channel that closes becomes
//! [`Event::WorkerGone`]. A message that does not decode (a worker that is not what
//! it claims, or a different build) is hostile input: it is logged, the worker is
//! treated as gone (the core then stops trusting it), and nothing more of it is
//! read.
//!
//! ```no_run
//! use modsynth_supervisor::event_loop::Inbox;
//! use modsynth_supervisor::links::Links;
//!
//! let inbox = Inbox::new().unwrap();
//! let links = Links::start(inbox.sender()).unwrap();
//! // After a worker said hello on `receiver`: links.add(7, receiver);
//! # drop(links);
//! ```

use crate::core::{Event, WorkerId};
use crate::event_loop::EventSender;
use ipc_channel::ipc::{self, IpcReceiver, IpcReceiverSet, IpcSelectionResult, IpcSender};
use modsynth_model::protocol::FromWorker;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Hands worker channels to the reader thread. Cheap to clone.
#[derive(Clone)]
pub struct Links {
    add: Sender<(WorkerId, IpcReceiver<FromWorker>)>,
    /// Wakes the reader (blocked in its set's select) to take new channels. A
    /// Mutex because `IpcSender` is not `Sync`; it is only held for one send.
    bell: Arc<Mutex<IpcSender<()>>>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Links")
    }
}

impl Links {
    /// Starts the reader thread; what workers say arrives on `events`.
    pub fn start(events: EventSender) -> Result<Links, String> {
        let (bell, rings) = ipc::channel::<()>().map_err(|e| format!("links: channel: {e}"))?;
        let mut set = IpcReceiverSet::new().map_err(|e| format!("links: receiver set: {e}"))?;
        let bell_id = set.add(rings).map_err(|e| format!("links: {e}"))?;
        let (add, added) = mpsc::channel();
        std::thread::Builder::new()
            .name("links".into())
            .spawn(move || read(set, bell_id, added, events))
            .map_err(|e| format!("links: thread: {e}"))?;
        Ok(Links {
            add,
            bell: Arc::new(Mutex::new(bell)),
        })
    }

    /// Reads worker `id`'s channel from now on, until it closes.
    pub fn add(&self, id: WorkerId, receiver: IpcReceiver<FromWorker>) {
        if self.add.send((id, receiver)).is_ok() {
            // A poisoned lock only means a panic elsewhere, which aborts the process.
            let bell = self.bell.lock().unwrap_or_else(|e| e.into_inner());
            let _ = bell.send(());
        }
    }
}

fn read(
    mut set: IpcReceiverSet,
    bell_id: u64,
    added: Receiver<(WorkerId, IpcReceiver<FromWorker>)>,
    events: EventSender,
) {
    // Set ids (assigned by the set) -> worker ids.
    let mut workers: HashMap<u64, WorkerId> = HashMap::new();
    // Workers whose channel sent something undecodable: no longer read.
    let mut refused: HashSet<u64> = HashSet::new();
    loop {
        let results = match set.select() {
            Ok(results) => results,
            Err(e) => {
                // Nothing is known to cause it; without this thread the core would
                // be deaf to every worker, so the process goes down (and its
                // watchdog restarts it, re-adopting the workers).
                panic!("links: waiting on the worker channels failed: {e}");
            }
        };
        for result in results {
            let event = match result {
                IpcSelectionResult::MessageReceived(id, _) if id == bell_id => {
                    for (worker, receiver) in added.try_iter() {
                        match set.add(receiver) {
                            Ok(set_id) => {
                                workers.insert(set_id, worker);
                            }
                            Err(e) => {
                                tracing::error!("links: cannot read worker {worker}: {e}");
                                if events.send(Event::WorkerGone(worker)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    continue;
                }
                IpcSelectionResult::ChannelClosed(id) if id == bell_id => return,
                IpcSelectionResult::MessageReceived(id, message) => {
                    if refused.contains(&id) {
                        continue;
                    }
                    let Some(&worker) = workers.get(&id) else {
                        continue;
                    };
                    match message.to::<FromWorker>() {
                        Ok(msg) => Event::FromWorker(worker, msg),
                        Err(e) => {
                            tracing::warn!(
                                "worker {worker} sent a message that does not decode ({e}): \
                                 treated as gone"
                            );
                            refused.insert(id);
                            Event::WorkerGone(worker)
                        }
                    }
                }
                IpcSelectionResult::ChannelClosed(id) => {
                    let Some(worker) = workers.remove(&id) else {
                        continue;
                    };
                    if refused.remove(&id) {
                        continue; // its departure was sent already
                    }
                    Event::WorkerGone(worker)
                }
            };
            if events.send(event).is_err() {
                return; // the core is gone: the supervisor is stopping
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::{Inbox, Poller, Ready};
    use std::time::{Duration, Instant};

    fn next(inbox: &Inbox, poller: &mut Poller) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ready = Vec::new();
        while Instant::now() < deadline {
            if let Some(e) = inbox.drain().next() {
                return e;
            }
            poller
                .wait(Some(Duration::from_millis(100)), &mut ready)
                .unwrap();
        }
        panic!("no event in 5 s");
    }

    #[test]
    fn what_workers_say_and_their_channels_closing_reach_the_inbox() {
        let inbox = Inbox::new().unwrap();
        let mut poller = Poller::new(&inbox, None).unwrap();
        let links = Links::start(inbox.sender()).unwrap();
        let (to_core_a, from_a) = ipc::channel::<FromWorker>().unwrap();
        let (to_core_b, from_b) = ipc::channel::<FromWorker>().unwrap();
        links.add(1, from_a);
        links.add(2, from_b);
        to_core_b.send(FromWorker::Promoted).unwrap();
        assert!(matches!(
            next(&inbox, &mut poller),
            Event::FromWorker(2, FromWorker::Promoted)
        ));
        to_core_a.send(FromWorker::Synced { token: 9 }).unwrap();
        assert!(matches!(
            next(&inbox, &mut poller),
            Event::FromWorker(1, FromWorker::Synced { token: 9 })
        ));
        drop(to_core_a);
        assert!(matches!(next(&inbox, &mut poller), Event::WorkerGone(1)));
        let mut ready = Vec::new();
        poller
            .wait(Some(Duration::from_millis(20)), &mut ready)
            .unwrap();
        assert!(
            !ready.contains(&Ready::Inbox) || inbox.drain().next().is_none(),
            "worker 2 is still there"
        );
    }

    #[test]
    fn a_worker_that_sends_garbage_is_gone_once_and_not_read_again() {
        let inbox = Inbox::new().unwrap();
        let mut poller = Poller::new(&inbox, None).unwrap();
        let links = Links::start(inbox.sender()).unwrap();
        // Same channel, another type: what arrives does not decode as FromWorker.
        let (garbage, receiver) = ipc::channel::<Vec<u8>>().unwrap();
        let receiver: IpcReceiver<FromWorker> = receiver.to_opaque().to();
        links.add(3, receiver);
        garbage.send(vec![0xff; 64]).unwrap();
        assert!(matches!(next(&inbox, &mut poller), Event::WorkerGone(3)));
        garbage.send(vec![0xff; 64]).unwrap();
        drop(garbage);
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut ready = Vec::new();
        while Instant::now() < deadline {
            poller
                .wait(Some(Duration::from_millis(50)), &mut ready)
                .unwrap();
            assert!(inbox.drain().next().is_none(), "nothing more of worker 3");
        }
    }
}
