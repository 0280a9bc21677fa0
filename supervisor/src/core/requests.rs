//! Requests in progress: what the core is waiting for, by token.
//!
//! Every request that needs an answer from a worker (a create, a free, a standby
//! or a replacement being assigned, a set being loaded) gets a token and waits here
//! until the answer with that token arrives. `/sync` and `/status` ask several
//! workers at once: each question gets a token of its own, tied to the request's
//! (the fan-out), and the request is settled once every question is answered or
//! its worker is gone. This part owns the tokens and that bookkeeping; the core
//! decides what an answer means.

use super::{Pending, WorkerId};
use std::collections::HashMap;

/// The requests in progress and the questions they wait on.
#[derive(Default)]
pub struct Requests {
    /// Request token -> the request.
    pending: HashMap<u64, Pending>,
    /// Question token -> (the request it belongs to, the worker asked), for
    /// `Sync` and `Status`; each question is also in its request's `waiting` set.
    fan_out: HashMap<u64, (u64, WorkerId)>,
    /// The last token given (tokens are never reused).
    last_token: u64,
}

impl Requests {
    /// A new token.
    pub fn token(&mut self) -> u64 {
        self.last_token += 1;
        self.last_token
    }

    /// `request` waits under `token` from now on.
    pub fn insert(&mut self, token: u64, request: Pending) {
        self.pending.insert(token, request);
    }

    /// Takes the request waiting under `token`.
    pub fn remove(&mut self, token: u64) -> Option<Pending> {
        self.pending.remove(&token)
    }

    /// The request waiting under `token`, to change.
    pub fn get_mut(&mut self, token: u64) -> Option<&mut Pending> {
        self.pending.get_mut(&token)
    }

    /// Keeps only the requests `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Pending) -> bool) {
        self.pending.retain(|_, p| keep(p));
    }

    /// Module `old` is called `new` from now on (a prepared set's module after its
    /// switch): the requests about it follow.
    pub fn rename_module(&mut self, old: &str, new: &str) {
        for p in self.pending.values_mut() {
            match p {
                Pending::Create { id, .. }
                | Pending::Free { id, .. }
                | Pending::Standby { id }
                | Pending::Replace { id, .. }
                    if id == old =>
                {
                    *id = new.to_string()
                }
                Pending::Load { creating, .. } if creating.contains(old) => {
                    creating.remove(old);
                    creating.insert(new.to_string());
                }
                _ => {}
            }
        }
    }

    /// The tokens of the requests `pick` says yes to.
    pub fn tokens(&self, mut pick: impl FnMut(&Pending) -> bool) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|(_, p)| pick(p))
            .map(|(&t, _)| t)
            .collect()
    }

    /// A question to worker `worker` on behalf of request `request`: its token.
    /// The caller adds it to the request's `waiting` set once it is sent.
    pub fn ask(&mut self, request: u64, worker: WorkerId) -> u64 {
        let token = self.token();
        self.fan_out.insert(token, (request, worker));
        token
    }

    /// Whether `token` is a question still waiting for its answer.
    pub fn expects(&self, token: u64) -> bool {
        self.fan_out.contains_key(&token)
    }

    /// Question `token` was answered (or will never be): it no longer holds its
    /// request up. The request's token, if it was a question.
    pub fn answered(&mut self, token: u64) -> Option<u64> {
        let (request, _) = self.fan_out.remove(&token)?;
        if let Some(Pending::Sync { waiting, .. } | Pending::Status { waiting, .. }) =
            self.pending.get_mut(&request)
        {
            waiting.remove(&token);
        }
        Some(request)
    }

    /// Request `request` waits for no more answers (they come too late): how many
    /// it was still waiting for. The late answers are then ignored.
    pub fn stop_waiting(&mut self, request: u64) -> usize {
        let waiting = match self.pending.get_mut(&request) {
            Some(Pending::Sync { waiting, .. } | Pending::Status { waiting, .. }) => {
                std::mem::take(waiting)
            }
            _ => return 0,
        };
        for token in &waiting {
            self.fan_out.remove(token);
        }
        waiting.len()
    }

    /// The questions worker `worker` has not answered yet.
    pub fn owed_by(&self, worker: WorkerId) -> Vec<u64> {
        self.fan_out
            .iter()
            .filter(|(_, &(_, w))| w == worker)
            .map(|(&t, _)| t)
            .collect()
    }

    /// Whether the fanned-out request `request` has every answer it waits for.
    pub fn settled(&self, request: u64) -> bool {
        matches!(
            self.pending.get(&request),
            Some(Pending::Sync { waiting, .. } | Pending::Status { waiting, .. }) if waiting.is_empty()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn status_asking(requests: &mut Requests, workers: &[WorkerId]) -> (u64, Vec<u64>) {
        let request = requests.token();
        let questions: Vec<u64> = workers.iter().map(|&w| requests.ask(request, w)).collect();
        requests.insert(
            request,
            Pending::Status {
                from: "127.0.0.1:9".parse().unwrap(),
                waiting: questions.iter().copied().collect::<HashSet<_>>(),
                due: std::time::Instant::now(),
            },
        );
        (request, questions)
    }

    #[test]
    fn a_fanned_out_request_settles_once_every_question_is_answered() {
        let mut requests = Requests::default();
        let (request, questions) = status_asking(&mut requests, &[1, 2]);
        assert!(!requests.settled(request));
        assert_eq!(requests.answered(questions[0]), Some(request));
        assert!(!requests.settled(request), "worker 2 owes an answer");
        assert!(requests.expects(questions[1]));
        assert_eq!(requests.answered(questions[1]), Some(request));
        assert!(requests.settled(request));
        assert!(!requests.expects(questions[1]), "answered once");
        assert_eq!(requests.answered(questions[1]), None);
    }

    #[test]
    fn a_worker_that_leaves_owes_its_answers_and_no_others() {
        let mut requests = Requests::default();
        let (request, questions) = status_asking(&mut requests, &[1, 2, 1]);
        let mut owed = requests.owed_by(1);
        owed.sort_unstable();
        assert_eq!(owed, [questions[0], questions[2]]);
        for t in owed {
            requests.answered(t);
        }
        assert!(!requests.settled(request));
        assert_eq!(requests.owed_by(2), [questions[1]]);
    }

    #[test]
    fn tokens_are_never_reused() {
        let mut requests = Requests::default();
        let a = requests.token();
        let b = requests.ask(a, 1);
        requests.answered(b);
        assert!(requests.token() > b);
    }
}
