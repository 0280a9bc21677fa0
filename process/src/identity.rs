//! Which process this is and where it plays: the JACK server it talks to and a
//! name for a process that outlives pid reuse.

/// The name of the JACK server this process talks to: `JACK_DEFAULT_SERVER`, else
/// `default` (what libjack picks).
pub fn jack_server_name() -> String {
    std::env::var("JACK_DEFAULT_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`, in clock ticks since
/// boot); `None` if there is no such process. Pids are reused; a pid with its start
/// time is not.
///
/// ```
/// use modsynth_process::process_start_time;
///
/// let me = process_start_time(std::process::id()).unwrap();
/// assert_eq!(process_start_time(std::process::id()), Some(me));
/// ```
pub fn process_start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// The fields of `/proc/<pid>/stat` from field 3 (the state) on; `None` if there
/// is no such process.
fn stat_fields(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything, ')' too:
    // the fields after it start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(rest.trim_start().to_string())
}

/// Whether process `pid` is stopped (state `T`, by SIGSTOP or a terminal, or `t`,
/// by a tracer): it runs nothing, its audio thread included, until continued.
/// `false` if there is no such process.
///
/// ```
/// use modsynth_process::is_stopped;
///
/// assert!(!is_stopped(std::process::id()));
/// ```
pub fn is_stopped(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| matches!(fields.chars().next(), Some('T' | 't')))
}
