//! Standby hosts and their seats (`modsynthd --standby-seats N`, issue 14).
//!
//! A standby host is one worker process with one JACK client that stands by for
//! up to N modules at once, each in a seat (see [`crate::placement`] for why and
//! which standbys sit there). Inside the core **every seat is a worker of its
//! own**: it has its own [`WorkerId`] and a [`Worker`] entry whose link knows its
//! host and seat number ([`WorkerLink::seat`]), so a module's `standby_worker`,
//! assigning, freeing, renaming, gates, parameters, the mirrors of connections
//! onto the standby's ports, `/status` and the registry treat a seat as they treat
//! any standby. Only three things differ, and they are here:
//!
//! - what is sent to a seat goes over its host's channel wrapped in
//!   [`ToWorker::ToSeat`] ([`WorkerLink::wrap`], applied by the effects), and a
//!   [`FromWorker::FromSeat`] read from the host's channel is handled as the
//!   seat's own message ([`Core::seat_said`]);
//! - the host is a worker too ([`Role::Host`]: never a spare, never a primary),
//!   and its death (its channel closing or its process ending) is the death of
//!   every seat: each module whose standby sat there gets a new one, and one
//!   that played in a seat fails over to its standby, as for any worker;
//! - a seat that was promoted (its primary died) plays the module only until its
//!   new standby, an ordinary worker, is ready; then the module is handed back
//!   ([`HandBack`]): `TakeOverAt { at, id }` to that worker, and on its
//!   `TookOver` the roles are swapped and the seat is told `StandBy`.
//!
//! [`Seats`] owns the hosts' seat tables, the free seats (oldest first) and the
//! hosts being started; the pool keeps at least one free seat ready, as it keeps
//! spares.

use super::*;
use crate::placement::Place;

/// Periods between the JACK frame a hand-back is decided at and the frame from
/// which the standby plays (`TakeOverAt::at`): the message crosses the core, the
/// worker's control thread and its audio thread, and on this 2-core machine a
/// sleeping thread can take 2-4 ms to run again (4 periods of 256 frames at 48
/// kHz are 21 ms). A worker that gets it late takes over at the first period after
/// it arrived, so being late costs no sample, only time.
pub const HANDBACK_PERIODS: u32 = 4;

/// Where the hand-back of a module that plays in a seat stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandBack {
    /// Its new standby `standby` (an ordinary worker) is assigned; the
    /// connections mirrored onto its ports are under way up to the connection
    /// change `after` (`None`: none was), after which it is told to take over.
    Mirroring {
        /// The worker that takes the module back.
        standby: WorkerId,
        /// The newest connection change asked when it was assigned.
        after: Option<u64>,
    },
    /// `standby` was told to take over from JACK frame `at`; its `TookOver`
    /// makes it the primary.
    TakingOver {
        /// The worker that takes the module back.
        standby: WorkerId,
        /// The frame it plays from.
        at: u32,
        /// When it was told (or last killed for not answering).
        since: Instant,
    },
}

/// How long a worker told to take its module back from a seat may take to say
/// it has: it answers once it has played its first period as the owner, a few
/// periods after being told, and gives up after a second of not owning it. One
/// that has not answered after this is hung: it is killed, and the seat takes the
/// module back from it (see `Core::lost`).
pub const HANDBACK_DEADLINE: Duration = Duration::from_secs(3);

/// Standby hosts, their seats, and the hosts being started.
#[derive(Debug, Default)]
pub struct Seats {
    /// Each host's seats' worker ids, by seat number.
    hosts: BTreeMap<WorkerId, Vec<WorkerId>>,
    /// Seats without a module, oldest first, each once.
    free: pool::IdQueue,
    /// Hosts being started.
    starting: HashSet<WorkerId>,
    /// Host starts that failed since the last one that worked; at
    /// [`MAX_SPAWN_FAILURES_IN_A_ROW`] no more are started (standbys are then
    /// workers of their own).
    failures_in_a_row: u32,
    /// A host came up without seats (a worker binary that does not serve them):
    /// no more are started.
    unsupported: bool,
}

impl Seats {
    /// Hosts being started.
    pub fn starting(&self) -> usize {
        self.starting.len()
    }

    /// Hosts alive.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Seats without a module now.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Whether `id` is a host being started.
    pub fn is_starting(&self, id: WorkerId) -> bool {
        self.starting.contains(&id)
    }

    /// The seats of host `host` (none if it is no host).
    pub fn seats_of(&self, host: WorkerId) -> Vec<WorkerId> {
        self.hosts.get(&host).cloned().unwrap_or_default()
    }

    /// The worker id of seat `number` of host `host`.
    pub fn seat(&self, host: WorkerId, number: u16) -> Option<WorkerId> {
        self.hosts.get(&host)?.get(usize::from(number)).copied()
    }

    /// Whether a host is to be started now so that `wanted` seats are free: one
    /// host starts at a time (its arrival looks again), none after repeated
    /// failures or once a host came up without seats.
    pub fn should_start(&self, wanted: usize) -> bool {
        !self.unsupported
            && self.failures_in_a_row < MAX_SPAWN_FAILURES_IN_A_ROW
            && self.starting.is_empty()
            && self.free.len() < wanted
    }

    /// Host `id` is being started.
    pub fn start(&mut self, id: WorkerId) {
        self.starting.insert(id);
    }

    /// Host `id` could not be started.
    pub fn start_failed(&mut self, id: WorkerId) {
        self.starting.remove(&id);
        self.failures_in_a_row += 1;
    }

    /// Host `id` came up without seats: it is no host, and no more are started.
    pub fn unsupported(&mut self, id: WorkerId) {
        self.starting.remove(&id);
        self.unsupported = true;
    }

    /// Host `host` is up with these seats (by number), all free.
    pub fn arrived(&mut self, host: WorkerId, seats: Vec<WorkerId>) {
        self.starting.remove(&host);
        self.failures_in_a_row = 0;
        for &seat in &seats {
            self.free.put_back(seat);
        }
        self.hosts.insert(host, seats);
    }

    /// Takes the seat that has been free longest.
    pub fn take(&mut self) -> Option<WorkerId> {
        self.free.take()
    }

    /// Seat `seat` is free again (once).
    pub fn put_back(&mut self, seat: WorkerId) {
        self.free.put_back(seat);
    }

    /// Seat `seat` is not to be given again.
    pub fn forget(&mut self, seat: WorkerId) {
        self.free.forget(seat);
    }

    /// Host `host` is gone: its seats (by number), none of them free any more.
    pub fn host_gone(&mut self, host: WorkerId) -> Vec<WorkerId> {
        self.starting.remove(&host);
        let seats = self.hosts.remove(&host).unwrap_or_default();
        for &seat in &seats {
            self.free.forget(seat);
        }
        seats
    }
}

impl Core {
    /// Where worker `wid` sits: a seat, or a worker of its own.
    pub(super) fn place_of(&self, wid: WorkerId) -> Place {
        match self.workers.get(&wid).and_then(|w| w.link.seat) {
            Some(_) => Place::Seat,
            None => Place::Spare,
        }
    }

    /// Whether worker `wid` is a seat of a standby host.
    pub(super) fn is_seat(&self, wid: WorkerId) -> bool {
        self.place_of(wid) == Place::Seat
    }

    /// A free seat or a spare for a standby of module `id`, as the placement says
    /// (best first); `None` if neither is free.
    pub(super) fn standby_place(&mut self, id: &str) -> Option<WorkerId> {
        let m = self.modules.get(id)?;
        let lockstep = m.spec.kind == catalog::Kind::Lv2;
        let primary = self.place_of(m.worker);
        let places = self.config.placement.standby(lockstep, primary);
        places.iter().find_map(|place| match place {
            Place::Seat => self.seats.take(),
            Place::Spare => self.pool.take(),
        })
    }

    /// Starts a standby host if fewer seats are free than the modules known now
    /// want, and at least one (the pool keeps a free seat ready, as it keeps
    /// spares). Nothing while seats are off.
    pub(super) fn start_hosts(&mut self, fx: &mut impl Effects) {
        let per_host = self.config.placement.seats_per_host;
        if per_host == 0 || self.shutting_down {
            return;
        }
        let wanted = self.modules.seats_wanted(self.config.placement).max(1);
        if self.seats.should_start(wanted) {
            let id = self.pool.fresh_id();
            self.seats.start(id);
            fx.spawn_host(id, per_host);
        }
    }

    /// Host `new` is up: it and each of its seats become workers of the core, the
    /// seats free, and the standbys owed take them.
    pub(super) fn host_spawned(&mut self, new: NewWorker, fx: &mut impl Effects) {
        self.counters
            .spawn_time_ms
            .record(new.spawn_time.as_secs_f64() * 1e3);
        let asked = self.config.placement.seats_per_host;
        let host = new.id;
        let link = WorkerLink {
            id: host,
            pid: new.pid,
            client: new.client,
            commands: new.commands,
            seat: None,
        };
        if new.seats == 0 {
            tracing::error!(
                "standby host {} came up without seats: the worker binary does not \
                 serve --seats; standbys are workers of their own from now on",
                link.client
            );
            self.seats.unsupported(host);
            fx.send(&link, ToWorker::Shutdown);
            self.workers.insert(
                host,
                Worker {
                    link,
                    role: Role::Retiring,
                    last_report: None,
                    report_asked: false,
                },
            );
            return self.refill(fx);
        }
        // What it says is input: never more seats than were asked of it.
        let count = new.seats.min(asked.max(1));
        let seats: Vec<WorkerId> = (0..count).map(|_| self.pool.fresh_id()).collect();
        for (number, &sid) in (0u16..).zip(&seats) {
            let seat = WorkerLink {
                id: sid,
                pid: link.pid,
                client: link.client.clone(),
                commands: link.commands.clone(),
                seat: Some(SeatOf { host, seat: number }),
            };
            self.workers.insert(
                sid,
                Worker {
                    link: seat,
                    role: Role::EmptySeat,
                    last_report: None,
                    report_asked: false,
                },
            );
        }
        tracing::info!(
            "standby host {} (pid {}) is up with {count} seats",
            link.client,
            link.pid
        );
        self.workers.insert(
            host,
            Worker {
                link,
                role: Role::Host,
                last_report: None,
                report_asked: false,
            },
        );
        self.seats.arrived(host, seats);
        if self.shutting_down {
            return self.stop_next_workers(fx);
        }
        self.serve_seats(fx);
        self.refill(fx);
    }

    /// Host `id` could not be started: tried again after the same backoff as a
    /// worker; after [`MAX_SPAWN_FAILURES_IN_A_ROW`] failures no more are started
    /// and standbys are workers of their own.
    pub(super) fn host_spawn_failed(
        &mut self,
        id: WorkerId,
        reason: String,
        fx: &mut impl Effects,
    ) {
        self.seats.start_failed(id);
        self.counters.spawn_failures += 1;
        self.counters.host_spawn_failures += 1;
        tracing::error!("standby host w{id:02} did not start: {reason}");
        if !self.seats.should_start(usize::MAX) && self.seats.starting() == 0 {
            tracing::error!(
                "standby hosts failed to start {MAX_SPAWN_FAILURES_IN_A_ROW} times in a row: \
                 standbys are workers of their own from now on"
            );
        }
        self.pool.refill_at(fx.now() + SPAWN_RETRY_BACKOFF);
    }

    /// Gives free seats to the modules owed a standby (each takes the place its
    /// placement says: one that must not sit in a seat takes a spare, or waits).
    pub(super) fn serve_seats(&mut self, fx: &mut impl Effects) {
        let mut owed = self.failover.standbys_owed();
        while owed > 0 && self.seats.free() > 0 {
            owed -= 1;
            let Some(id) = self.failover.next_standby() else {
                break;
            };
            self.add_standby(&id, fx);
        }
    }

    /// What host `host` said for its seat `number`: handled as that seat's own
    /// message. A seat it does not have, or what a seat never says (a hello, an
    /// adoption, a nested seat), is logged and dropped.
    pub(super) fn seat_said(
        &mut self,
        host: WorkerId,
        number: u16,
        msg: FromWorker,
        fx: &mut impl Effects,
    ) {
        let Some(seat) = self.seats.seat(host, number) else {
            tracing::warn!("worker {host} spoke for seat {number}, which it does not have");
            return;
        };
        match msg {
            FromWorker::Hello { .. } | FromWorker::Adopted { .. } | FromWorker::FromSeat { .. } => {
                tracing::warn!("seat {number} of worker {host} said what no seat says: dropped");
            }
            msg => self.worker_said(seat, msg, fx),
        }
    }

    /// Seat `seat` let its module go: free again, for the standbys owed, unless
    /// it was retired (it failed an assignment).
    pub(super) fn seat_freed(&mut self, seat: WorkerId, fx: &mut impl Effects) {
        let Some(w) = self.workers.get_mut(&seat) else {
            return;
        };
        if w.role == Role::Retiring || self.shutting_down {
            return;
        }
        w.role = Role::EmptySeat;
        self.seats.put_back(seat);
        self.serve_seats(fx);
    }

    /// Module `id`'s standby `wid` has its ports: if the module plays in a seat,
    /// its hand-back starts once the connections mirrored onto those ports are
    /// made (asked before now).
    pub(super) fn hand_back_when_mirrored(
        &mut self,
        id: &str,
        wid: WorkerId,
        fx: &mut impl Effects,
    ) {
        let Some(m) = self.modules.get(id) else {
            return;
        };
        let primary = self.place_of(m.worker);
        if m.standby_worker != Some(wid) || !self.config.placement.hands_back(primary) {
            return;
        }
        let after = self.patch.jobs.newest();
        if let Some(m) = self.modules.get_mut(id) {
            m.handback = Some(HandBack::Mirroring {
                standby: wid,
                after,
            });
        }
        self.advance_handbacks(fx);
    }

    /// Tells every standby whose mirrored connections are made to take its module
    /// over from its seat, [`HANDBACK_PERIODS`] after the server's last cycle.
    /// Without the server's time now, it waits for the next tick.
    pub(super) fn advance_handbacks(&mut self, fx: &mut impl Effects) {
        if self.seats.hosts() == 0 {
            return;
        }
        self.kill_overdue_handbacks(fx);
        let due: Vec<(String, WorkerId)> = self
            .modules
            .iter()
            .filter_map(|(id, m)| match m.handback {
                Some(HandBack::Mirroring { standby, after })
                    if after.is_none_or(|t| self.patch.jobs.answered_through(t)) =>
                {
                    Some((id.clone(), standby))
                }
                _ => None,
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let Some((frame, period)) = fx.last_cycle() else {
            return;
        };
        let at = frame.wrapping_add(HANDBACK_PERIODS.saturating_mul(period));
        for (id, standby) in due {
            let Some(w) = self.workers.get(&standby) else {
                continue;
            };
            tracing::info!(
                "module {id}: handing it back from its seat to {} (pid {}) at frame {at}",
                w.link.client,
                w.link.pid
            );
            fx.send(&w.link, ToWorker::TakeOverAt { at, id: id.clone() });
            if let Some(m) = self.modules.get_mut(&id) {
                m.handback = Some(HandBack::TakingOver {
                    standby,
                    at,
                    since: fx.now(),
                });
            }
        }
    }

    /// Kills every worker told to take a module back from its seat that has not
    /// said it did within [`HANDBACK_DEADLINE`]: its death gives the module back to
    /// the seat, which then gets a new standby to try again.
    fn kill_overdue_handbacks(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        let overdue: Vec<(String, WorkerId)> = self
            .modules
            .iter()
            .filter_map(|(id, m)| match m.handback {
                Some(HandBack::TakingOver { standby, since, .. })
                    if now.duration_since(since) >= HANDBACK_DEADLINE =>
                {
                    Some((id.clone(), standby))
                }
                _ => None,
            })
            .collect();
        for (id, standby) in overdue {
            if let Some(Some(HandBack::TakingOver { since, .. })) =
                self.modules.get_mut(&id).map(|m| m.handback.as_mut())
            {
                *since = now;
            }
            if let Some(w) = self.workers.get(&standby) {
                tracing::warn!(
                    "module {id}: {} (pid {}) did not take it back from its seat within \
                     {HANDBACK_DEADLINE:?}: killing it",
                    w.link.client,
                    w.link.pid
                );
                fx.kill(&w.link);
            }
        }
    }

    /// Worker `wid` says it took over the module it was told to take back from a
    /// seat: it is the primary now, and the seat its standby (told so with
    /// `StandBy`). Values sent to the seat meanwhile may have landed after the
    /// handover frame: the new primary gets every value again.
    pub(super) fn handed_back(
        &mut self,
        wid: WorkerId,
        silent_frames: Option<u32>,
        fx: &mut impl Effects,
    ) {
        let taking = |m: &Module| {
            matches!(m.handback, Some(HandBack::TakingOver { standby, .. }) if standby == wid)
                && m.standby_worker == Some(wid)
        };
        let Some(id) = self
            .modules
            .iter()
            .find(|(_, m)| taking(m))
            .map(|(id, _)| id.clone())
        else {
            tracing::debug!("worker {wid} took over nothing it was asked to");
            return;
        };
        let now = fx.now();
        let Some(m) = self.modules.get_mut(&id) else {
            return;
        };
        let seat = m.worker;
        m.handback = None;
        let seat_ports = std::mem::replace(&mut m.ports, std::mem::take(&mut m.standby_ports));
        m.standby_ports = seat_ports;
        m.worker = wid;
        m.standby_worker = Some(seat);
        // A new primary is judged by the heartbeat check after its grace time.
        m.playing_since = Some(now);
        m.last_frame = None;
        m.sent_since_frame = 0;
        let Some(pid) = self.workers.get_mut(&wid).map(|w| {
            w.role = Role::Primary(id.clone());
            w.link.pid
        }) else {
            return;
        };
        let mut host = String::new();
        if let Some(w) = self.workers.get_mut(&seat) {
            w.role = Role::Standby(id.clone());
            host = w.link.client.clone();
            fx.send(&w.link, ToWorker::StandBy { primary_pid: pid });
        }
        self.counters.handbacks += 1;
        self.resend_values(&id, fx);
        match silent_frames {
            Some(0) => tracing::info!(
                "module {id} was handed back from its seat on {host} to worker {wid}: \
                 the seat stands by again"
            ),
            gap => tracing::warn!(
                "module {id} was handed back from its seat on {host} to worker {wid} \
                 with {gap:?} frames silent: the seat stands by again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_seats_are_given_oldest_first_each_once_and_go_with_their_host() {
        let mut seats = Seats::default();
        seats.start(10);
        assert!(!seats.should_start(1), "one host starts at a time");
        seats.arrived(10, vec![11, 12]);
        seats.start(20);
        seats.arrived(20, vec![21]);
        assert_eq!((seats.hosts(), seats.free(), seats.starting()), (2, 3, 0));
        assert_eq!(seats.seat(10, 1), Some(12));
        assert_eq!(seats.seat(10, 2), None, "no such seat");
        assert_eq!(seats.seat(11, 0), None, "a seat is no host");
        assert_eq!(seats.take(), Some(11));
        seats.put_back(11);
        seats.put_back(11);
        assert_eq!(seats.host_gone(10), vec![11, 12]);
        assert_eq!([seats.take(), seats.take()], [Some(21), None]);
        assert!(seats.seats_of(10).is_empty());
    }

    #[test]
    fn hosts_stop_being_started_after_repeated_failures_or_a_host_without_seats() {
        let mut seats = Seats::default();
        assert!(seats.should_start(1) && !seats.should_start(0));
        for id in 0..MAX_SPAWN_FAILURES_IN_A_ROW {
            seats.start(id);
            seats.start_failed(id);
        }
        assert!(
            !seats.should_start(1),
            "a broken installation must not spin"
        );
        let mut seats = Seats::default();
        seats.start(1);
        seats.unsupported(1);
        assert!(!seats.should_start(1));
    }
}
