//! The warm pool: spares arriving, kept, retired, and refilled a few at a time.
//!
//! [`Pool`] owns the spares' queue and the workers being started, and decides how
//! many to start and when; the core's methods below tie it to the workers it
//! knows and to the requests waiting for a spare.

use super::*;

/// Workers waiting to be given something (the pool's spares, the free seats of
/// standby hosts): oldest first, each at most once. It reads as the queue it
/// holds; changes go through its methods, which keep every id in it once.
#[derive(Debug, Default, PartialEq)]
pub struct IdQueue(VecDeque<WorkerId>);

impl IdQueue {
    /// Takes the id that has waited longest.
    pub fn take(&mut self) -> Option<WorkerId> {
        self.0.pop_front()
    }

    /// Puts `id` at the back (once: an id already waiting keeps its place).
    pub fn put_back(&mut self, id: WorkerId) {
        if !self.0.contains(&id) {
            self.0.push_back(id);
        }
    }

    /// `id` waits no more (gone, retired, or given otherwise).
    pub fn forget(&mut self, id: WorkerId) {
        self.0.retain(|&w| w != id);
    }
}

impl std::ops::Deref for IdQueue {
    type Target = VecDeque<WorkerId>;

    fn deref(&self) -> &VecDeque<WorkerId> {
        &self.0
    }
}

/// The spares and the workers being started.
#[derive(Debug, Default)]
pub struct Pool {
    /// Spares in the order they became ready (oldest first), each once. Seen by
    /// the core's tests, which check which workers are spares.
    pub(super) ready: IdQueue,
    /// Workers being started.
    starting: HashSet<WorkerId>,
    /// The id the next worker started gets (above every id used or seen).
    pub(super) next_worker: WorkerId,
    /// Spawns failed since the last one that worked (see
    /// [`MAX_SPAWN_FAILURES_IN_A_ROW`]).
    failures_in_a_row: u32,
    /// A refill is due at this time (see [`REFILL_DELAY`]).
    refill_after: Option<Instant>,
}

impl Pool {
    /// Spares ready now.
    pub fn spares(&self) -> usize {
        self.ready.len()
    }

    /// Workers being started now.
    pub fn starting(&self) -> usize {
        self.starting.len()
    }

    /// Takes the spare that has waited longest.
    pub fn take(&mut self) -> Option<WorkerId> {
        self.ready.take()
    }

    /// Puts `wid` at the back of the spares' queue (once).
    pub fn put_back(&mut self, wid: WorkerId) {
        self.ready.put_back(wid);
    }

    /// `wid` is no spare any more (gone, or retired).
    pub fn forget(&mut self, wid: WorkerId) {
        self.ready.forget(wid);
    }

    /// Worker `id` started: no longer starting, and spawning works again.
    pub fn started(&mut self, id: WorkerId) {
        self.starting.remove(&id);
        self.failures_in_a_row = 0;
    }

    /// Worker `id` could not be started.
    pub fn start_failed(&mut self, id: WorkerId) {
        self.starting.remove(&id);
        self.failures_in_a_row += 1;
    }

    /// Worker starts that failed since the last one that worked.
    pub fn failures_in_a_row(&self) -> u32 {
        self.failures_in_a_row
    }

    /// A user asked for a worker: after repeated failures the pool stopped
    /// refilling, and this is worth one more try (which fails with the reason if
    /// it fails too).
    pub fn try_again(&mut self) {
        self.failures_in_a_row = self.failures_in_a_row.min(MAX_SPAWN_FAILURES_IN_A_ROW - 1);
    }

    /// A worker id never given before, for a standby host or a seat (which are not
    /// counted as starting spares).
    pub fn fresh_id(&mut self) -> WorkerId {
        let id = self.next_worker;
        self.next_worker += 1;
        id
    }

    /// New workers get ids (and JACK client names) above `id`.
    pub fn number_above(&mut self, id: WorkerId) {
        self.next_worker = self.next_worker.max(id.saturating_add(1));
    }

    /// The workers to start now so that spares plus starting ones reach `want`,
    /// at most [`MAX_CONCURRENT_SPAWNS`] starting at once, none after
    /// [`MAX_SPAWN_FAILURES_IN_A_ROW`] failures; they count as starting from now.
    pub fn start_more(&mut self, want: usize) -> Vec<WorkerId> {
        let mut ids = Vec::new();
        if self.failures_in_a_row >= MAX_SPAWN_FAILURES_IN_A_ROW {
            return ids;
        }
        while self.ready.len() + self.starting.len() < want
            && self.starting.len() < MAX_CONCURRENT_SPAWNS
        {
            let id = self.next_worker;
            self.next_worker += 1;
            self.starting.insert(id);
            ids.push(id);
        }
        ids
    }

    /// Schedules a refill [`REFILL_DELAY`] after `now` (see there), unless one is
    /// due already.
    pub fn refill_soon(&mut self, now: Instant) {
        self.refill_after.get_or_insert(now + REFILL_DELAY);
    }

    /// Whether the scheduled refill is due at `now` (then it is no longer
    /// scheduled).
    pub fn refill_due(&mut self, now: Instant) -> bool {
        let due = self.refill_after.is_some_and(|t| now >= t);
        if due {
            self.refill_after = None;
        }
        due
    }

    /// Schedules a refill at `due`, or keeps the one due earlier.
    pub fn refill_at(&mut self, due: Instant) {
        self.refill_after = Some(self.refill_after.map_or(due, |t| t.min(due)));
    }

    /// When the scheduled refill is due.
    pub fn refill_deadline(&self) -> Option<Instant> {
        self.refill_after
    }
}

impl Core {
    pub(super) fn spawned(&mut self, new: NewWorker, fx: &mut impl Effects) {
        if self.seats.is_starting(new.id) {
            return self.host_spawned(new, fx);
        }
        self.pool.started(new.id);
        self.counters
            .spawn_time_ms
            .record(new.spawn_time.as_secs_f64() * 1e3);
        let link = WorkerLink {
            id: new.id,
            pid: new.pid,
            client: new.client,
            commands: new.commands,
            seat: None,
        };
        if new.seats > 0 {
            // Asked for a worker, got a standby host: it would refuse primaries.
            tracing::error!(
                "worker {} came up as a standby host ({} seats) unasked: retired",
                link.client,
                new.seats
            );
            fx.send(&link, ToWorker::Shutdown);
            let role = Role::Retiring;
            self.workers.insert(
                new.id,
                Worker {
                    link,
                    role,
                    last_report: None,
                    report_asked: false,
                },
            );
            return self.refill(fx);
        }
        self.workers.insert(
            new.id,
            Worker {
                link,
                role: Role::Spare,
                last_report: None,
                report_asked: false,
            },
        );
        if self.shutting_down {
            self.stop_next_workers(fx);
            return;
        }
        self.pool.put_back(new.id);
        self.notify(
            fx,
            osc::message("/pool/spare", vec![OscType::Int(self.pool.spares() as i32)]),
        );
        self.serve_one(fx);
        self.refill(fx);
    }

    /// A spare just became ready: gives it to whoever waits for one. A module that
    /// lost its primary goes first, then a create that waited for a spare, then a
    /// module without its standby.
    pub(super) fn serve_one(&mut self, fx: &mut impl Effects) {
        if let Some((id, fresh)) = self.failover.next_replacement() {
            self.replace(&id, fresh, fx);
        } else if let Some((from, request, started)) = self.modules.next_waiting() {
            self.counters.cold_creates += 1;
            self.create(from, request, started, fx);
        } else if let Some(id) = self.failover.next_standby() {
            self.add_standby(&id, fx);
        }
    }

    /// Spares that requests known now will take: what the modules want (waiting
    /// creates, missing standbys) and the replacements owed.
    fn demand(&self) -> usize {
        self.modules.spares_wanted(self.config.placement) + self.failover.replacements_owed()
    }

    /// A worker let its module go (ports unregistered, names and properties
    /// removed): it is reused, first by whoever waits for a spare, instead of
    /// closing its JACK client and starting a new one. A `set load --replace`
    /// frees the old set's workers while the new set's creates wait, and a JACK
    /// client closed and opened again costs jackd2 two passes over every client
    /// (that is how all 32 creates of a replace failed in issue 18). Surplus spares
    /// are kept up to [`MAX_SPARES_FACTOR`] times the pool beyond what is waited
    /// for; only beyond that are they retired (closing a JACK client is a
    /// synchronous notification to every client and slowed creates running at the
    /// same time, measured).
    pub(super) fn worker_freed(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        if self.is_seat(wid) {
            return self.seat_freed(wid, fx);
        }
        // Plus the workers the last set switch freed: a set list's next prepare
        // takes them back, instead of closing JACK clients now and opening others
        // then (that churn while the switched-to set renamed its ports made new
        // clients hang in jackd2's metadata database: see `Core::follow_switch`).
        let keep = MAX_SPARES_FACTOR * self.config.pool + self.demand() + self.switch_reserve;
        if self.shutting_down || self.pool.spares() >= keep {
            return self.retire(wid, fx);
        }
        self.make_spare(wid);
        self.serve_one(fx);
    }

    /// A worker could not be started. Nothing fails at once: the start is tried
    /// again after a backoff (see [`SPAWN_RETRY_BACKOFF`]). Only when starts keep
    /// failing ([`MAX_SPAWN_FAILURES_IN_A_ROW`]) and no spare is on its way does
    /// the create that waited longest fail, with the reason; each other waiting
    /// create gets a try of its own before it can fail too. So one spare that
    /// could not open its JACK client in time fails no create, and a broken
    /// installation fails them one by one, each with the reason, never spinning.
    pub(super) fn spawn_failed(&mut self, id: WorkerId, reason: String, fx: &mut impl Effects) {
        if self.seats.is_starting(id) {
            return self.host_spawn_failed(id, reason, fx);
        }
        tracing::error!("worker w{id:02} did not start: {reason}");
        self.pool.start_failed(id);
        self.counters.spawn_failures += 1;
        let tries = self.pool.failures_in_a_row();
        if tries >= MAX_SPAWN_FAILURES_IN_A_ROW
            && self.pool.spares() == 0
            && self.pool.starting() == 0
        {
            if let Some((from, Request::New { id, .. }, _)) = self.modules.next_waiting() {
                let why = format!("no worker could be started ({tries} tries in a row): {reason}");
                self.create_failed(from, &id, &why, fx);
            }
            if self.modules.waiting() > 0 {
                self.pool.try_again();
            }
        }
        self.last_spawn_error = Some(reason);
        let doublings = self.pool.failures_in_a_row().saturating_sub(1).min(8);
        let backoff = (SPAWN_RETRY_BACKOFF * 2u32.pow(doublings)).min(SPAWN_RETRY_MAX);
        self.pool.refill_at(fx.now() + backoff);
    }

    /// Fails the creates that have waited for a spare longer than
    /// [`CREATE_WAIT_LIMIT`], each alone, with the last spawn failure as reason.
    pub(super) fn expire_waiting(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        while let Some((from, request)) = self.modules.take_expired(now) {
            if let Request::New { id, .. } = request {
                let why = match &self.last_spawn_error {
                    Some(e) => format!(
                        "no spare within {} s (last worker start failed: {e})",
                        CREATE_WAIT_LIMIT.as_secs()
                    ),
                    None => format!("no spare within {} s", CREATE_WAIT_LIMIT.as_secs()),
                };
                self.create_failed(from, &id, &why, fx);
            }
        }
    }

    /// During shutdown: keeps [`MAX_CONCURRENT_SPAWNS`] workers closing at a time.
    /// Many JACK clients closing at once stall jackd2 (seen: 13 of 15 hung in
    /// `jack_client_close` for over 3 s), one or two at a time close in ~20 ms each.
    /// A standby host is stopped as one worker; its seats go with it.
    pub(super) fn stop_next_workers(&mut self, fx: &mut impl Effects) {
        let closing = self
            .workers
            .values()
            .filter(|w| w.role == Role::Stopping)
            .count();
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.role != Role::Stopping && w.link.seat.is_none())
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for id in ids
            .into_iter()
            .take(MAX_CONCURRENT_SPAWNS.saturating_sub(closing))
        {
            if let Some(w) = self.workers.get_mut(&id) {
                w.role = Role::Stopping;
                if !fx.send(&w.link, ToWorker::Shutdown) {
                    tracing::debug!("worker {} is already gone", w.link.client);
                }
            }
        }
    }

    /// Puts a worker without a module back in the ready queue (once); a seat
    /// among the free seats.
    pub(super) fn make_spare(&mut self, wid: WorkerId) {
        if self.is_seat(wid) {
            if let Some(w) = self.workers.get_mut(&wid) {
                w.role = Role::EmptySeat;
                self.seats.put_back(wid);
            }
            return;
        }
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Spare;
            self.pool.put_back(wid);
        }
    }

    /// Tells a worker to exit; its exit is then expected, not a death. A seat
    /// cannot exit alone: it is told to let its module go and is not given again
    /// (it goes with its host).
    pub(super) fn retire(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        if self.is_seat(wid) {
            self.seats.forget(wid);
            let token = self.token();
            if let Some(w) = self.workers.get_mut(&wid) {
                w.role = Role::Retiring;
                fx.send(&w.link, ToWorker::Free { token });
            }
            return;
        }
        self.pool.forget(wid);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Retiring;
            fx.send(&w.link, ToWorker::Shutdown);
        }
    }

    /// Starts workers until spares plus starting ones reach the pool size, a few at
    /// a time, and a standby host when seats are on and too few are free; each
    /// arrival calls this again.
    pub(super) fn refill(&mut self, fx: &mut impl Effects) {
        if self.shutting_down {
            return;
        }
        // Sized for what waits, standbys included: a set load queues its creates
        // here, so the pool grows for the whole set at once, not a spare at a time.
        // Workers being freed count as spares on their way: a replace frees the old
        // set's workers as its creates start waiting, and they serve them.
        let want = self.config.pool + self.demand();
        let freeing = self
            .workers
            .values()
            .filter(|w| w.role == Role::Freeing && w.link.seat.is_none())
            .count();
        for id in self.pool.start_more(want.saturating_sub(freeing)) {
            fx.spawn(id);
        }
        self.start_hosts(fx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_up_to_the_wanted_count_a_few_at_a_time_with_fresh_ids() {
        let mut pool = Pool::default();
        pool.number_above(6);
        assert_eq!(pool.start_more(5), [7, 8], "two at a time");
        assert!(pool.start_more(5).is_empty(), "until one arrives");
        pool.started(7);
        pool.put_back(7);
        assert_eq!(pool.start_more(5), [9]);
        pool.started(8);
        pool.put_back(8);
        pool.started(9);
        pool.put_back(9);
        assert_eq!(pool.start_more(5), [10, 11]);
        assert_eq!((pool.spares(), pool.starting()), (3, 2));
    }

    #[test]
    fn repeated_failures_stop_the_refill_until_a_user_asks_or_a_start_works() {
        let mut pool = Pool::default();
        for _ in 0..MAX_SPAWN_FAILURES_IN_A_ROW {
            let ids = pool.start_more(1);
            assert_eq!(ids.len(), 1);
            pool.start_failed(ids[0]);
        }
        assert!(
            pool.start_more(1).is_empty(),
            "a broken installation must not spin"
        );
        pool.try_again();
        let id = pool.start_more(1);
        assert_eq!(id.len(), 1, "one more try for a user's request");
        pool.started(id[0]);
        pool.put_back(id[0]);
        assert_eq!(
            pool.start_more(2).len(),
            1,
            "a start that worked resets the count"
        );
    }

    #[test]
    fn spares_are_taken_oldest_first_each_once() {
        let mut pool = Pool::default();
        for id in [3, 1, 3, 2] {
            pool.put_back(id);
        }
        pool.forget(1);
        assert_eq!(
            [pool.take(), pool.take(), pool.take()],
            [Some(3), Some(2), None]
        );
    }

    #[test]
    fn a_refill_is_due_once_its_delay_has_passed() {
        let mut pool = Pool::default();
        let t0 = Instant::now();
        pool.refill_soon(t0);
        pool.refill_soon(t0 + REFILL_DELAY); // one due already: kept
        assert_eq!(pool.refill_deadline(), Some(t0 + REFILL_DELAY));
        assert!(!pool.refill_due(t0));
        assert!(pool.refill_due(t0 + REFILL_DELAY));
        assert!(!pool.refill_due(t0 + REFILL_DELAY), "once");
        assert_eq!(pool.refill_deadline(), None);
    }
}
