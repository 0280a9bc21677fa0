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
/// use modsynth_process::logging::RateLimit;
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

/// Makes a panic in any thread end the whole process (SIGABRT) once the panic's
/// message and location are on stderr.
///
/// Without it a panicking thread dies alone and the process lives on without it: a
/// supervisor with a dead OSC thread is deaf, one with a dead sentinel blind to
/// deaths. A process that is gone is restarted by its watchdog and takes its
/// workers back; a deaf one is not. The hook runs before any unwinding, so a
/// `catch_unwind` anywhere (libraries' callbacks) cannot keep the process alive
/// either. Nothing in modsynth's binaries relies on unwinding: no `catch_unwind`,
/// and no thread's result is read from its join handle to recover from a panic.
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("a thread panicked: aborting the process");
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    /// Runs as a child of [`a_panic_in_any_thread_aborts_the_process`], which asks
    /// for it by name; ignored otherwise, so that it never passes unchecked.
    #[test]
    #[ignore = "the child of a_panic_in_any_thread_aborts_the_process, which runs it"]
    fn panicking_thread_child() {
        assert!(
            std::env::var_os("MODSYNTH_PANIC_CHILD").is_some(),
            "run by a_panic_in_any_thread_aborts_the_process, which checks how it ends"
        );
        super::abort_on_panic();
        let _ = std::thread::spawn(|| panic!("on purpose")).join();
        // Not reached: the panic aborted the process before the join returned.
        std::process::exit(0);
    }

    #[test]
    fn a_panic_in_any_thread_aborts_the_process() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logging::tests::panicking_thread_child",
                "--ignored",
                "--nocapture",
            ])
            .env("MODSYNTH_PANIC_CHILD", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        // SIGABRT is 6 on Linux.
        assert_eq!(status.signal(), Some(6), "{status:?}");
    }
}
