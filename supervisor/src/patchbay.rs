//! The patchbay thread: every JACK connect and disconnect the supervisor makes,
//! off the core's thread.
//!
//! A connect is a request to the JACK server, answered by the server's thread; a
//! server that is stuck (stopped, wedged closing clients, swapping) never answers,
//! and a core that waited for it would answer no OSC at all. So the core only
//! queues [`PatchJob`]s here and goes on; this thread makes them one after another,
//! in the order they were asked for (a connect asked after a disconnect sees it),
//! and posts each result back to the core's inbox as [`Event::Patched`]. The core
//! fails a job whose answer has not come by its `due` time; a job still queued
//! when its time has passed is not made at all, so a server that comes back does
//! not replay a pile of requests that were answered as failed.
//!
//! Port lookups (`jack_port_by_name`, a port's connections, `jack_port_by_id`)
//! stay on the core's thread: jackd2 answers them from the graph in shared memory,
//! without asking the server (a stopped jackd does not delay them).

use crate::core::{Event, PatchJob};
use crate::event_loop::EventSender;
use crate::jack_client::Jack;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

/// How many connection changes may wait for the server. A set of 64 modules
/// makes a few hundred connections (with standby mirrors); more than this
/// waiting means the server has stopped answering, and failing at once is
/// better than queueing without end.
pub const QUEUE: usize = 1024;

/// The queue into the patchbay thread.
pub struct Patchbay {
    jobs: SyncSender<PatchJob>,
}

impl Patchbay {
    /// Starts the thread that makes `jack`'s connections and posts their results
    /// to `events`. The thread ends when the core's loop is gone.
    pub fn start(jack: Arc<Jack>, events: EventSender) -> Result<Patchbay, String> {
        let (jobs, queue) = sync_channel::<PatchJob>(QUEUE);
        std::thread::Builder::new()
            .name("patchbay".into())
            .spawn(move || {
                for job in queue {
                    let result = if Instant::now() > job.due {
                        Err(job.timeout())
                    } else {
                        make(&jack, &job)
                    };
                    if events
                        .send(Event::Patched {
                            token: job.token,
                            result,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the patchbay thread: {e}"))?;
        Ok(Patchbay { jobs })
    }

    /// Queues `job`; `Err` (a reason for the user) when the queue is full.
    pub fn submit(&self, job: PatchJob) -> Result<(), String> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(format!(
                "{} failed: {QUEUE} connection changes are waiting for the JACK server, \
                 which is not answering (is jackd stopped or overloaded?)",
                job.what()
            )),
            // The thread ends only with the loop, which is the caller's.
            Err(TrySendError::Disconnected(job)) => Err(format!(
                "{} failed: the patchbay thread is gone",
                job.what()
            )),
        }
    }
}

/// Makes one connection change (blocks while the server does not answer).
fn make(jack: &Jack, job: &PatchJob) -> Result<(), String> {
    let (src, dst) = (job.src.as_str(), job.dst.as_str());
    let result = if job.connect {
        jack.client().connect_ports_by_name(src, dst)
    } else {
        jack.client().disconnect_ports_by_name(src, dst)
    };
    match result {
        Ok(()) => Ok(()),
        // Connecting what is connected already is what the user wanted anyway.
        Err(jack::Error::PortAlreadyConnected(..)) => Ok(()),
        Err(e) => Err(format!("{} failed: {e}", job.what())),
    }
}
