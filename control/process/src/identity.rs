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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything, ')' too:
    // the fields after it start after the last ')'. Field 3 is the first of them.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
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
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3, the state, is the first after the command name's last ')'.
    stat.rfind(')')
        .is_some_and(|end| matches!(stat[end + 1..].trim_start().chars().next(), Some('T' | 't')))
}
