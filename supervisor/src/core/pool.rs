//! The warm pool: spares arriving, kept, retired, and refilled a few at a time.

use super::*;

impl Core {
    pub(super) fn spawned(&mut self, new: NewWorker, fx: &mut impl Effects) {
        self.starting.remove(&new.id);
        self.spawn_failures_in_a_row = 0;
        self.counters
            .spawn_time_ms
            .record(new.spawn_time.as_secs_f64() * 1e3);
        let link = WorkerLink {
            id: new.id,
            pid: new.pid,
            client: new.client,
            commands: new.commands,
        };
        self.workers.insert(
            new.id,
            Worker {
                link,
                role: Role::Spare,
                last_report: None,
            },
        );
        if self.shutting_down {
            self.stop_next_workers(fx);
            return;
        }
        self.ready.push_back(new.id);
        self.notify(
            fx,
            osc::message("/pool/spare", vec![OscType::Int(self.ready.len() as i32)]),
        );
        // A module that lost its primary goes first, then a create that waited for
        // this spare, then a module without its standby.
        if let Some((id, fresh)) = self.needs_replacement.pop_first() {
            self.replace(&id, fresh, fx);
        } else if let Some((from, request, started)) = self.waiting.pop_front() {
            self.counters.cold_creates += 1;
            self.create(from, request, started, fx);
        } else if let Some(id) = self.needs_standby.pop_first() {
            self.add_standby(&id, fx);
        }
        self.refill(fx);
    }

    /// During shutdown: keeps [`MAX_CONCURRENT_SPAWNS`] workers closing at a time.
    /// Many JACK clients closing at once stall jackd2 (seen: 13 of 15 hung in
    /// `jack_client_close` for over 3 s), one or two at a time close in ~20 ms each.
    pub(super) fn stop_next_workers(&mut self, fx: &mut impl Effects) {
        let closing = self
            .workers
            .values()
            .filter(|w| w.role == Role::Stopping)
            .count();
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.role != Role::Stopping)
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

    /// Puts a worker without a module back in the ready queue (once).
    pub(super) fn make_spare(&mut self, wid: WorkerId) {
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Spare;
            if !self.ready.contains(&wid) {
                self.ready.push_back(wid);
            }
        }
    }

    /// Tells a worker to exit; its exit is then expected, not a death.
    pub(super) fn retire(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        self.ready.retain(|&w| w != wid);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Retiring;
            fx.send(&w.link, ToWorker::Shutdown);
        }
    }

    /// Schedules a refill [`REFILL_DELAY`] from now (see there), unless one is due.
    pub(super) fn refill_soon(&mut self, now: Instant) {
        self.refill_after.get_or_insert(now + REFILL_DELAY);
    }

    /// Starts workers until spares plus starting ones reach the pool size, a few at
    /// a time; each arrival calls this again.
    pub(super) fn refill(&mut self, fx: &mut impl Effects) {
        if self.shutting_down || self.spawn_failures_in_a_row >= MAX_SPAWN_FAILURES_IN_A_ROW {
            return;
        }
        let want = self.config.pool + self.waiting.len() + self.needs_replacement.len();
        while self.ready.len() + self.starting.len() < want
            && self.starting.len() < MAX_CONCURRENT_SPAWNS
        {
            let id = self.next_worker;
            self.next_worker += 1;
            self.starting.insert(id);
            fx.spawn(id);
        }
    }
}
