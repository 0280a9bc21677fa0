//! Logging set-up shared by every modsynth binary.

/// Sends `tracing` output to stderr. `RUST_LOG` sets the level (default `warn`).
/// libjack's own messages (target `jack`) are off unless `RUST_LOG` names them: when
/// no server runs they repeat, in five lines, what our one error line says better.
pub fn init() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => tracing_subscriber::EnvFilter::new(spec),
        _ => tracing_subscriber::EnvFilter::new("warn,jack=off"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Lets a repeated log line through at most once per interval, and counts what it
/// held back: a flood of bad input must not become a flood of log lines (a worker
/// once wrote 82,121 ERROR lines in 5 s, one per lost change).
///
/// ```
/// use modsynth_control::logging::RateLimit;
/// use std::time::Duration;
///
/// let mut limit = RateLimit::new(Duration::from_secs(60));
/// assert_eq!(limit.allow(), Some(0)); // the first one goes out
/// assert_eq!(limit.allow(), None);    // held back...
/// assert_eq!(limit.allow(), None);
/// ```
#[derive(Debug)]
pub struct RateLimit {
    interval: std::time::Duration,
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl RateLimit {
    /// At most one line per `interval`.
    pub const fn new(interval: std::time::Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(n)` if a line may be logged now (`n`: lines held back since the last
    /// one, to mention in it), else `None` (counted).
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}
