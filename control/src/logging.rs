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
