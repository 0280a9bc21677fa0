//! `/notify` subscribers: who hears the core's events, and until when.
//!
//! The part of the core that owns the subscriptions: the core tells it who asked
//! and asks it whom to tell; the limit and the expiry are decided here alone.

use super::{ReplyTo, MAX_SUBSCRIBERS, NOTIFY_TTL};
use std::collections::HashMap;
use std::time::Instant;

/// The `/notify` subscriptions, each until it expires.
#[derive(Debug, Default)]
pub struct Subscribers {
    /// Subscriber -> when its subscription runs out (at most [`MAX_SUBSCRIBERS`]).
    until: HashMap<ReplyTo, Instant>,
}

impl Subscribers {
    /// `/notify on` from `from` at `now`: subscribes it for [`NOTIFY_TTL`] (a renewal
    /// starts the time again), or unsubscribes it. `Err` with the reason when
    /// [`MAX_SUBSCRIBERS`] others are subscribed already.
    pub fn request(&mut self, from: ReplyTo, on: bool, now: Instant) -> Result<(), String> {
        self.until.retain(|_, until| *until > now);
        if !on {
            self.until.remove(&from);
        } else if self.until.len() >= MAX_SUBSCRIBERS && !self.until.contains_key(&from) {
            return Err(format!("limit: {MAX_SUBSCRIBERS} subscribers already"));
        } else {
            self.until.insert(from, now + NOTIFY_TTL);
        }
        Ok(())
    }

    /// Whom an event at `now` goes to: the subscriptions not expired.
    pub fn current(&self, now: Instant) -> impl Iterator<Item = ReplyTo> + '_ {
        self.until
            .iter()
            .filter(move |(_, &until)| until > now)
            .map(|(&s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(port: u16) -> ReplyTo {
        ReplyTo::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_subscription_lasts_its_ttl_and_a_renewal_starts_it_again() {
        let mut s = Subscribers::default();
        let t0 = Instant::now();
        s.request(addr(1), true, t0).unwrap();
        let later = t0 + NOTIFY_TTL - Duration::from_secs(1);
        s.request(addr(1), true, later).unwrap();
        let past_first = t0 + NOTIFY_TTL + Duration::from_secs(1);
        assert_eq!(s.current(past_first).collect::<Vec<_>>(), [addr(1)]);
        assert_eq!(s.current(later + NOTIFY_TTL).count(), 0, "expired");
    }

    #[test]
    fn unsubscribing_stops_the_events() {
        let mut s = Subscribers::default();
        let now = Instant::now();
        s.request(addr(1), true, now).unwrap();
        s.request(addr(1), false, now).unwrap();
        assert_eq!(s.current(now).count(), 0);
    }

    #[test]
    fn beyond_the_limit_newcomers_are_refused_but_renewals_and_expired_places_count() {
        let mut s = Subscribers::default();
        let now = Instant::now();
        for port in 0..MAX_SUBSCRIBERS as u16 {
            s.request(addr(port), true, now).unwrap();
        }
        let refused = s.request(addr(999), true, now).unwrap_err();
        assert!(refused.starts_with("limit:"), "{refused}");
        s.request(addr(0), true, now)
            .expect("a renewal is no newcomer");
        // Once the others expired, their places are free again.
        let later = now + NOTIFY_TTL + Duration::from_secs(1);
        s.request(addr(999), true, later).unwrap();
        assert_eq!(s.current(later).collect::<Vec<_>>(), [addr(999)]);
    }
}
