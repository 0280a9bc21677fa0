//! The real [`Effects`]: UDP replies, ipc messages, processes and JACK (port
//! lookups here, connections through the [`Patchbay`] thread).

use crate::core::{Effects, PatchJob, Silence, WorkerId, WorkerLink};
use crate::event_loop::EventSender;
use crate::jack_client::Jack;
use crate::osc_server::Traffic;
use crate::osc_tcp::{Connections, Sent};
use crate::patchbay::Patchbay;
use crate::sets_dir::SetsDir;
use crate::spawn::Spawner;
use modsynth_model::protocol::ToWorker;
use modsynth_protocol::osc;
use modsynth_protocol::packet::MAX_PACKET;
use modsynth_shm::StateSegment;
use rosc::OscMessage;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

/// What the core's effects act on: the OSC socket, the JACK client, the spawner
/// and the mapped state segments.
pub struct Runtime {
    /// A clone of the OSC socket, so replies come from the port clients sent to
    /// (non-blocking, like the socket the loop reads).
    pub socket: UdpSocket,
    /// The supervisor's own JACK client (connections, port lookups).
    pub jack: Arc<Jack>,
    /// Makes the JACK connections, off the core's thread.
    pub patchbay: Patchbay,
    /// Starts workers off the core's thread.
    pub spawner: Spawner,
    /// Where spawned workers report (the loop's inbox).
    pub events: EventSender,
    /// State segments mapped for the heartbeat check, by name.
    pub states: HashMap<String, StateSegment>,
    /// OSC traffic counts (refusals are counted as they are sent).
    pub traffic: Arc<Traffic>,
    /// Where set files are read and written.
    pub sets: SetsDir,
    /// OSC over TCP connections, for replies to their peers.
    pub tcp: Connections,
    /// What the JACK client's `midi_in` received ([`Jack::take_midi`]).
    pub midi: Option<rtrb::Consumer<crate::core::midi::MidiIn>>,
    /// MIDI messages dropped (ring full) as last logged.
    pub midi_dropped: u64,
}

impl Effects for Runtime {
    fn read_midi(&mut self) -> Vec<crate::core::midi::MidiIn> {
        let Some(ring) = &mut self.midi else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(ring.slots());
        while let Ok(msg) = ring.pop() {
            out.push(msg);
        }
        let dropped = self.jack.midi_dropped();
        if dropped != self.midi_dropped {
            tracing::warn!(
                "midi_in: {} control message(s) dropped, more than the ring holds arrived between two drains",
                dropped - self.midi_dropped
            );
            self.midi_dropped = dropped;
        }
        out
    }

    /// A quarter period (1-5 ms): a CC read in one cycle reaches its worker before
    /// the next cycle starts, with time to spare for the two hops (core, worker).
    fn midi_poll_interval(&mut self) -> std::time::Duration {
        let client = self.jack.client();
        let period = client.buffer_size() as f64 / client.sample_rate().max(1) as f64;
        std::time::Duration::from_secs_f64((period / 4.0).clamp(0.001, 0.005))
    }

    fn reply(&mut self, to: SocketAddr, msg: OscMessage) {
        let address = msg.addr.clone();
        tracing::trace!("reply to {to}: {address} {:?}", msg.args.first());
        let mut bytes = osc::encode(msg);
        if bytes.starts_with(b"/fail\0") {
            self.traffic.refused(to);
        }
        // A TCP peer gets it on its connection, whatever its size.
        match self.tcp.send(to, &bytes) {
            Sent::Queued => return,
            Sent::Disconnected => {
                tracing::warn!("OSC over TCP: {to} reads no replies: disconnected");
                return;
            }
            Sent::NotTcp => {}
        }
        if bytes.len() > MAX_PACKET {
            // Too big for one datagram: say so rather than send nothing.
            let fail = osc::Fail::new(
                &address,
                format!(
                    "the reply has {} bytes, more than one UDP datagram holds",
                    bytes.len()
                ),
            );
            bytes = osc::encode(fail.to_message());
        }
        // The socket is non-blocking (the core's loop reads it): a reply that
        // meets a full send buffer is dropped like a datagram lost on the way,
        // rather than stall the core.
        if let Err(e) = self.socket.send_to(&bytes, to) {
            tracing::debug!("reply to {to}: {e}");
        }
    }

    fn traffic(&mut self) -> modsynth_protocol::status::TrafficReport {
        self.traffic.report()
    }

    fn send(&mut self, worker: &WorkerLink, msg: ToWorker) -> bool {
        tracing::trace!("to {}: {}", worker.client, msg.kind());
        // A seat's message goes to its host, wrapped.
        worker.commands.send(worker.wrap(msg)).is_ok()
    }

    fn spawn(&mut self, id: WorkerId) {
        self.spawner.spawn(id, 0, self.events.clone());
    }

    fn spawn_host(&mut self, id: WorkerId, seats: u16) {
        self.spawner.spawn(id, seats, self.events.clone());
    }

    /// A seat's pid is its host's: killing a seat (a hang) kills the host and
    /// with it every seat, each of which the core then replaces.
    fn kill(&mut self, worker: &WorkerLink) {
        match kill_child(worker.pid) {
            Ok(_) => {}
            // A worker adopted from an earlier modsynthd is not our child: as
            // before, signalled by pid. Keeping the pidfd opened (and checked by
            // start time) at adoption would close the pid-reuse gap for these too.
            // (No pid 0: that would signal our own process group.)
            Err(NotChild) => {
                use rustix::process::{kill_process, Pid, Signal};
                if let Some(pid) = Pid::from_raw(worker.pid as i32) {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
        }
    }

    /// Queued for the patchbay thread: a JACK server that does not answer
    /// holds that thread, never the core.
    fn patch(&mut self, job: &PatchJob) -> Option<Result<(), String>> {
        match self.patchbay.submit(job.clone()) {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn port_exists(&mut self, name: &str) -> bool {
        self.jack.client().port_by_name(name).is_some()
    }

    fn connections(&mut self, port: &str) -> Vec<String> {
        self.jack
            .client()
            .port_by_name(port)
            .map(|p| p.get_connections())
            .unwrap_or_default()
    }

    fn read_file(&mut self, name: &str) -> Result<String, String> {
        self.sets.read(name)
    }

    fn write_file(&mut self, name: &str, contents: &str) -> Result<(), String> {
        self.sets.write(name, contents)
    }

    fn sets_dir(&mut self) -> String {
        self.sets.path().display().to_string()
    }

    fn port_name(&mut self, id: u32) -> Option<String> {
        self.jack.port_name(id)
    }

    fn unlink_state(&mut self, name: &str) {
        // A segment of the same name made later is another one: map it anew.
        self.states.remove(name);
        if let Err(e) = modsynth_shm::Segment::unlink(name) {
            tracing::warn!("cannot unlink {name}: {e}");
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn last_cycle(&mut self) -> Option<(u32, u32)> {
        Some(self.jack.last_cycle())
    }

    fn published_frame(&mut self, segment: &str) -> Option<u32> {
        if !self.states.contains_key(segment) {
            let mapped = StateSegment::open(segment).ok()?;
            self.states.insert(segment.to_string(), mapped);
        }
        self.states.get(segment).map(|s| s.published().0)
    }

    fn control_output(&mut self, segment: &str, index: usize) -> Option<f32> {
        if !self.states.contains_key(segment) {
            let mapped = StateSegment::open(segment).ok()?;
            self.states.insert(segment.to_string(), mapped);
        }
        let state = self.states.get(segment)?;
        if index >= state.large_len() {
            return None;
        }
        // SAFETY: `index` is inside the large buffer (checked above), whose f32s
        // are 4-aligned (the buffer is 64-aligned). The owner worker rewrites it
        // every period from another process: an atomic load reads one whole value
        // (aligned 4-byte loads are single-copy atomic), never a torn one, and is
        // this process's only access.
        let bits = unsafe {
            std::sync::atomic::AtomicU32::from_ptr(state.large().add(index).cast::<u32>())
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        Some(f32::from_bits(bits)).filter(|v| v.is_finite())
    }

    fn silence(&mut self, segment: &str, pid: u32) -> Silence {
        if modsynth_process::is_stopped(pid) {
            return Silence::Stopped;
        }
        match self.states.get(segment).and_then(|s| s.unfinished_period()) {
            Some(since) => Silence::InPeriod(since),
            None => Silence::Waiting,
        }
    }

    fn published_frames(&mut self, segments: &[&str]) -> Vec<Option<u32>> {
        // Mappings of modules that are gone are dropped; new ones are opened once.
        self.states
            .retain(|name, _| segments.contains(&name.as_str()));
        segments
            .iter()
            .map(|&name| {
                if !self.states.contains_key(name) {
                    let segment = StateSegment::open(name).ok()?;
                    self.states.insert(name.to_string(), segment);
                }
                self.states.get(name).map(|s| s.published().0)
            })
            .collect()
    }
}

/// SIGKILLs `pid` only if it is still this process's own child that has not been
/// reaped. The pid is pinned first (a pidfd refers to one process, never to a
/// later one that reuses the number), then `waitid` on that pidfd, which only
/// works for our children, proves it is ours; the signal goes through the pidfd.
/// A worker reaped already (its pid maybe reused by an unrelated process) is
/// never signalled: `Ok(false)`.
pub fn kill_child(pid: u32) -> Result<bool, NotChild> {
    use rustix::process::{pidfd_open, pidfd_send_signal, waitid, Pid, PidfdFlags, Signal};
    use rustix::process::{WaitId, WaitIdOptions};
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(false);
    };
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        // Gone and reaped, or not ours to open: nothing to signal.
        Err(_) => return Ok(false),
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match waitid(WaitId::PidFd(std::os::fd::AsFd::as_fd(&fd)), options) {
        // Our child, still running: this is the process we mean.
        Ok(None) => {}
        // Our child, already dead (a zombie until its reader reaps it).
        Ok(Some(_)) => return Ok(false),
        Err(rustix::io::Errno::CHILD) => return Err(NotChild),
        Err(_) => return Ok(false),
    }
    Ok(pidfd_send_signal(&fd, Signal::KILL).is_ok())
}

/// [`kill_child`] found a process that is not this process's child: reaped and
/// its pid reused, or a worker adopted from an earlier `modsynthd`.
#[derive(Debug, PartialEq, Eq)]
pub struct NotChild;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_live_children_are_killed() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        assert_eq!(kill_child(child.id()), Ok(true));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        // Reaped: nothing is sent, whoever has that pid now.
        assert_eq!(kill_child(child.id()), Ok(false));
        // Not our child (our parent, the test runner): refused, not signalled.
        let parent = rustix::process::Pid::as_raw(rustix::process::getppid()) as u32;
        assert_eq!(kill_child(parent), Err(NotChild));
    }
}
