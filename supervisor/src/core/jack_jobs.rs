//! Connection changes under way: asked of JACK (through [`Effects::patch`]), not
//! answered yet. Each carries what the core does with its result ([`Then`]) and a
//! deadline: a server that does not answer fails that one change, with a reason,
//! and nothing else waits for it.

use super::*;

/// How long a connection change may wait for the JACK server. jackd2 connects in
/// well under 10 ms even with 64 clients busy; 2 s is a server that is stopped or
/// wedged, not one that is slow.
pub const PATCH_DEADLINE: Duration = Duration::from_secs(2);

/// One JACK connect or disconnect, by real port names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchJob {
    /// Names the result ([`Event::Patched`]).
    pub token: u64,
    /// Connect (true) or disconnect.
    pub connect: bool,
    /// The source port.
    pub src: String,
    /// The destination port.
    pub dst: String,
    /// After this the change is failed, and not made if it has not started.
    pub due: Instant,
}

impl PatchJob {
    /// "connecting a -> b", for messages.
    pub fn what(&self) -> String {
        format!(
            "{} {} -> {}",
            if self.connect {
                "connecting"
            } else {
                "disconnecting"
            },
            self.src,
            self.dst
        )
    }

    /// The reason of a change the server did not answer in time.
    pub fn timeout(&self) -> String {
        format!(
            "the JACK server did not answer {} within {} s (is jackd stopped or \
             overloaded?): try again when it answers",
            self.what(),
            PATCH_DEADLINE.as_secs()
        )
    }
}

/// What the core does with a connection change's result.
#[derive(Debug, Clone)]
pub(super) enum Then {
    /// A `/patch/connect` or `/patch/disconnect`: reply, and on success keep the
    /// connection (by module port names) and mirror it onto standbys.
    Reply {
        from: ReplyTo,
        /// The connection as the patch names it.
        src: String,
        dst: String,
    },
    /// Best effort: log a failure as `context: reason`, and a success if `done`
    /// says what to log.
    Log {
        context: String,
        done: Option<String>,
    },
    /// A connection made by hand on a standby's port, moved onto its module's
    /// primary (`c`): on failure the hand-made one (`a`, `b`) is undone.
    StandbyMoved { a: String, b: String, c: Connection },
}

/// A change asked for, not answered.
#[derive(Debug)]
pub(super) struct Pending {
    pub job: PatchJob,
    pub then: Then,
}

/// Every connection change under way.
#[derive(Debug, Default)]
pub(super) struct JackJobs {
    next_token: u64,
    pending: BTreeMap<u64, Pending>,
    /// Requests failed at their deadline while JACK was still making them: if
    /// JACK makes one after all, it is undone, so that a `/fail` changed nothing.
    late: BTreeMap<u64, PatchJob>,
    /// Answers held until every change asked before them is answered (the token
    /// of the newest such change): a set load's `/done` means it is connected.
    held: Vec<(u64, Option<ReplyTo>, OscMessage)>,
}

impl JackJobs {
    /// A job for `src -> dst`, due [`PATCH_DEADLINE`] after `now`.
    pub fn job(&mut self, connect: bool, src: &str, dst: &str, now: Instant) -> PatchJob {
        self.next_token += 1;
        PatchJob {
            token: self.next_token,
            connect,
            src: src.to_string(),
            dst: dst.to_string(),
            due: now + PATCH_DEADLINE,
        }
    }

    /// Whether a change of `src -> dst` (either way) is under way.
    pub fn touches(&self, src: &str, dst: &str) -> bool {
        self.pending
            .values()
            .any(|p| p.job.src == src && p.job.dst == dst)
    }

    /// A request failed at its deadline, for [`JackJobs::made_late`].
    pub fn failed_late(&mut self, job: PatchJob) {
        self.late.insert(job.token, job);
    }

    /// The request `token` was failed at its deadline: the late result arrived.
    pub fn made_late(&mut self, token: u64) -> Option<PatchJob> {
        self.late.remove(&token)
    }

    /// Whether the same change is under way already (best-effort callers skip it).
    pub fn is_pending(&self, connect: bool, src: &str, dst: &str) -> bool {
        self.pending
            .values()
            .any(|p| p.job.connect == connect && p.job.src == src && p.job.dst == dst)
    }

    /// The token of the newest change under way (`None`: none is).
    pub fn newest(&self) -> Option<u64> {
        self.pending.keys().next_back().copied()
    }

    /// Whether every change asked up to `token` (included) is answered.
    pub fn answered_through(&self, token: u64) -> bool {
        self.pending
            .keys()
            .next()
            .is_none_or(|&oldest| oldest > token)
    }

    /// Keeps `job` until its result arrives or its time runs out.
    pub fn wait_for(&mut self, job: PatchJob, then: Then) {
        self.pending.insert(job.token, Pending { job, then });
    }

    /// The change `token`'s result arrived: what it was for (`None`: failed as
    /// late already).
    pub fn answered(&mut self, token: u64) -> Option<Pending> {
        self.pending.remove(&token)
    }

    /// The changes whose time ran out by `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<Pending> {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.job.due <= now)
            .map(|(t, _)| *t)
            .collect();
        late.into_iter()
            .filter_map(|t| self.pending.remove(&t))
            .collect()
    }

    /// Holds answer `msg` to `to` until every change under way now is answered;
    /// gives it back at once when none is.
    pub fn hold(
        &mut self,
        to: Option<ReplyTo>,
        msg: OscMessage,
    ) -> Option<(Option<ReplyTo>, OscMessage)> {
        match self.pending.keys().next_back() {
            Some(&newest) => {
                self.held.push((newest, to, msg));
                None
            }
            None => Some((to, msg)),
        }
    }

    /// The held answers whose changes are all answered now.
    pub fn released(&mut self) -> Vec<(Option<ReplyTo>, OscMessage)> {
        let oldest = self.pending.keys().next().copied();
        let (done, wait): (Vec<_>, Vec<_>) = self
            .held
            .drain(..)
            .partition(|(newest, _, _)| oldest.is_none_or(|o| *newest < o));
        self.held = wait;
        done.into_iter().map(|(_, to, msg)| (to, msg)).collect()
    }

    /// When the next change runs out of time.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.job.due).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Then {
        Then::Log {
            context: String::new(),
            done: None,
        }
    }

    fn answer(text: &str) -> OscMessage {
        osc::message(text, Vec::new())
    }

    #[test]
    fn an_answer_waits_for_every_change_asked_before_it() {
        let mut jobs = JackJobs::default();
        let now = Instant::now();
        let to = Some("127.0.0.1:9".parse().unwrap());
        assert!(jobs.hold(to, answer("/now")).is_some(), "nothing under way");
        let first = jobs.job(true, "a:out", "b:in", now);
        let second = jobs.job(true, "c:out", "d:in", now);
        jobs.wait_for(first.clone(), log());
        jobs.wait_for(second.clone(), log());
        assert!(jobs.hold(to, answer("/done")).is_none());
        jobs.answered(second.token);
        assert!(jobs.released().is_empty(), "the first is still under way");
        let after = jobs.job(true, "e:out", "f:in", now);
        jobs.wait_for(after, log());
        jobs.answered(first.token);
        let released: Vec<String> = jobs.released().into_iter().map(|(_, m)| m.addr).collect();
        assert_eq!(
            released,
            ["/done"],
            "a change asked after it does not hold it"
        );
    }

    #[test]
    fn a_change_not_answered_in_time_expires_and_a_late_result_is_recognised() {
        let mut jobs = JackJobs::default();
        let now = Instant::now();
        let job = jobs.job(false, "a:out", "b:in", now);
        jobs.wait_for(job.clone(), log());
        assert!(jobs.is_pending(false, "a:out", "b:in"));
        assert!(!jobs.is_pending(true, "a:out", "b:in"), "the other way");
        assert!(jobs.touches("a:out", "b:in"));
        assert_eq!(jobs.deadline(), Some(now + PATCH_DEADLINE));
        assert!(jobs.expired(now).is_empty());
        let expired = jobs.expired(now + PATCH_DEADLINE);
        assert_eq!(expired.len(), 1);
        assert_eq!(jobs.deadline(), None);
        jobs.failed_late(job.clone());
        assert!(jobs.answered(job.token).is_none(), "failed already");
        assert_eq!(jobs.made_late(job.token), Some(job.clone()));
        assert_eq!(jobs.made_late(job.token), None, "once");
    }
}
