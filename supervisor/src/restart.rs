//! What happens to a module when the worker playing it dies: restart policy as data.
//!
//! A death is bad luck until it repeats. [`RestartPolicy::decide`] looks at a module's
//! [`CrashHistory`] and picks the [`Recovery`]: its hot standby takes over, or a pool
//! spare continues from the shared state; a module that keeps dying (more than
//! `max_deaths` within `window`, or a worker dying within `relapse` of taking the
//! module over, i.e. of the state it took over) is restarted once from a fresh state,
//! and quarantined (left silent, reported) if it keeps dying after that. The rest of
//! the set plays on in every case.
//!
//! ```
//! use modsynth_supervisor::restart::{CrashHistory, Recovery, RestartPolicy};
//! use std::time::{Duration, Instant};
//!
//! let policy = RestartPolicy { max_deaths: 2, window: Duration::from_secs(10), relapse: Duration::from_millis(100) };
//! let mut history = CrashHistory::default();
//! let t = Instant::now();
//! assert_eq!(policy.decide(&mut history, t, true), Recovery::Standby);
//! assert_eq!(policy.decide(&mut history, t + Duration::from_secs(1), false), Recovery::Spare);
//! assert_eq!(policy.decide(&mut history, t + Duration::from_secs(2), true), Recovery::Fresh);
//! assert_eq!(policy.decide(&mut history, t + Duration::from_secs(3), true), Recovery::Quarantine);
//! ```

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// When deaths become a crash loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// More deaths than this within `window` is a crash loop.
    pub max_deaths: usize,
    /// See `max_deaths`.
    pub window: Duration,
    /// A worker dying this soon after it took the module over died of the state it
    /// took over: a crash loop at once. A few periods, with room for the
    /// supervisor's own reaction time.
    pub relapse: Duration,
}

impl Default for RestartPolicy {
    /// 5 deaths in 10 s, relapse within 50 ms (9 periods of 256 frames at 48 kHz).
    /// A performer who kills workers by
    /// hand to test the rig stays far below that; a module whose DSP crashes on
    /// every period hits it within a second.
    fn default() -> RestartPolicy {
        RestartPolicy {
            max_deaths: 5,
            window: Duration::from_secs(10),
            relapse: Duration::from_millis(50),
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = String;

    /// `N/SECONDS`, e.g. `5/10`: more than N deaths within SECONDS is a crash loop.
    ///
    /// ```
    /// use modsynth_supervisor::restart::RestartPolicy;
    /// let p: RestartPolicy = "3/20".parse().unwrap();
    /// assert_eq!((p.max_deaths, p.window.as_secs()), (3, 20));
    /// assert!("3".parse::<RestartPolicy>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<RestartPolicy, String> {
        let bad = || format!("'{s}' is not N/SECONDS (e.g. 5/10: more than 5 deaths in 10 s)");
        let (n, secs) = s.split_once('/').ok_or_else(bad)?;
        let max_deaths: usize = n.trim().parse().map_err(|_| bad())?;
        let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
        if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            return Err(bad());
        }
        Ok(RestartPolicy {
            max_deaths,
            window: Duration::from_secs_f64(secs),
            ..RestartPolicy::default()
        })
    }
}

/// How a module whose primary died goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Its hot standby has taken the state over already: move the names to it.
    Standby,
    /// A pool spare maps the state, takes it over and gets the ports' connections.
    Spare,
    /// A pool spare plays the module from a fresh state (its parameters kept).
    Fresh,
    /// Nothing plays it any more; it stays listed, silent, until freed or replaced.
    Quarantine,
}

/// What the policy remembers about one module.
#[derive(Debug, Clone, Default)]
pub struct CrashHistory {
    deaths: VecDeque<Instant>,
    /// When the module's current worker took it over (after a death).
    took_over_at: Option<Instant>,
    /// Whether the module was restarted fresh since its last quiet `window`.
    restarted_fresh: bool,
}

impl CrashHistory {
    /// Notes that a new worker took the module over at `at`.
    pub fn took_over(&mut self, at: Instant) {
        self.took_over_at = Some(at);
    }
}

impl RestartPolicy {
    /// Records a death of the module's primary at `now` and says how it goes on;
    /// `standby_ready` is whether a hot standby with its ports is there.
    pub fn decide(
        &self,
        history: &mut CrashHistory,
        now: Instant,
        standby_ready: bool,
    ) -> Recovery {
        while history
            .deaths
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > self.window)
        {
            history.deaths.pop_front();
        }
        if history.deaths.is_empty() {
            // A quiet window forgives an old fresh restart.
            history.restarted_fresh = false;
        }
        history.deaths.push_back(now);
        let relapsed = history
            .took_over_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.relapse);
        history.took_over_at = None;
        let looping = history.deaths.len() > self.max_deaths || relapsed;
        match (looping, history.restarted_fresh, standby_ready) {
            (true, true, _) => Recovery::Quarantine,
            (true, false, _) => {
                history.restarted_fresh = true;
                Recovery::Fresh
            }
            (false, _, true) => Recovery::Standby,
            (false, _, false) => Recovery::Spare,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            max_deaths: 3,
            window: Duration::from_secs(10),
            relapse: Duration::from_millis(100),
        }
    }

    #[test]
    fn occasional_deaths_fail_over_for_ever() {
        let (p, mut h, t) = (policy(), CrashHistory::default(), Instant::now());
        for i in 0..100 {
            let at = t + Duration::from_secs(4 * i);
            assert_eq!(p.decide(&mut h, at, true), Recovery::Standby, "death {i}");
        }
    }

    #[test]
    fn without_a_ready_standby_a_spare_takes_over() {
        let (p, mut h) = (policy(), CrashHistory::default());
        assert_eq!(p.decide(&mut h, Instant::now(), false), Recovery::Spare);
    }

    #[test]
    fn too_many_deaths_in_the_window_restart_fresh_once_then_quarantine() {
        let (p, mut h, t) = (policy(), CrashHistory::default(), Instant::now());
        let at = |s: u64| t + Duration::from_secs(s);
        for s in 0..3 {
            assert_eq!(p.decide(&mut h, at(s), true), Recovery::Standby);
        }
        assert_eq!(p.decide(&mut h, at(3), true), Recovery::Fresh);
        assert_eq!(p.decide(&mut h, at(4), true), Recovery::Quarantine);
    }

    #[test]
    fn a_worker_dying_right_after_taking_over_is_a_crash_loop_at_once() {
        let (p, mut h, t) = (policy(), CrashHistory::default(), Instant::now());
        assert_eq!(p.decide(&mut h, t, true), Recovery::Standby);
        h.took_over(t);
        let soon = t + Duration::from_millis(20);
        assert_eq!(p.decide(&mut h, soon, true), Recovery::Fresh);
        h.took_over(soon);
        let again = soon + Duration::from_millis(20);
        assert_eq!(p.decide(&mut h, again, true), Recovery::Quarantine);
    }

    #[test]
    fn a_worker_dying_long_after_taking_over_is_not_a_relapse() {
        let (p, mut h, t) = (policy(), CrashHistory::default(), Instant::now());
        h.took_over(t);
        assert_eq!(
            p.decide(&mut h, t + Duration::from_secs(1), true),
            Recovery::Standby
        );
    }

    #[test]
    fn a_quiet_window_forgives_an_old_fresh_restart() {
        let (p, mut h, t) = (policy(), CrashHistory::default(), Instant::now());
        for s in 0..4 {
            p.decide(&mut h, t + Duration::from_secs(s), true);
        }
        assert!(h.restarted_fresh);
        let later = t + Duration::from_secs(60);
        assert_eq!(p.decide(&mut h, later, true), Recovery::Standby);
        assert!(!h.restarted_fresh);
    }

    #[test]
    fn the_policy_parses_from_n_slash_seconds_and_refuses_nonsense() {
        assert_eq!("5/10".parse::<RestartPolicy>().unwrap().max_deaths, 5);
        for bad in ["", "5", "x/10", "5/0", "5/-1", "5/inf", "5/NaN"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }
}
