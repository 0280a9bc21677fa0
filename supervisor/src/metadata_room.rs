//! Room in jackd2's metadata database for the JACK clients that die without closing.
//!
//! Every libjack client of jackd2 1.9.21 opens the user's metadata environment
//! (`/dev/shm/jack_db-<uid>`, see [`crate::metadata_deadlocks`]) when it starts, and
//! Berkeley DB gives each opener a few mutexes from a region of fixed size. A client
//! that closes gives them back; a SIGKILLed one cannot, and nothing else ever does.
//! Measured with `db5.3_stat -x` while SIGKILLing `jack_metro` clients: 9 mutexes
//! lost per kill, and after about 170 kills the region (1,561 mutexes by jackd2's
//! default) was full. From then on no new client of the user could open the
//! database (`BDB2034 unable to allocate memory for mutex; resize mutex region`):
//! new workers could not name their ports, and pools did not fill. A modular rig
//! whose modules fail over a few hundred times in one server's life met that wall,
//! whoever's clients died.
//!
//! Berkeley DB sizes a region when the first process creates the environment, and
//! reads a `DB_CONFIG` file in the environment's directory when it does.
//! [`make_room`] writes one that raises the mutex limit to [`MUTEX_MAX`]: room for
//! about 11,000 deaths. The region grows only as mutexes are used (128 bytes each),
//! so the room costs nothing until it is needed. jackd2 removes its own files when
//! it stops and leaves this one, so every later server of the user gets the room.
//!
//! A server already running keeps the size it was made with: `modsynthd` writes
//! the file at start and [`room`] says how much a running server has, so that the
//! user can be told to restart the server once.
//!
//! ```
//! use modsynth_supervisor::metadata_room::{make_room, Room, MUTEX_MAX};
//!
//! let env = std::env::temp_dir().join(format!("jack_db-doc-{}", std::process::id()));
//! make_room(&env).unwrap();
//! let config = std::fs::read_to_string(env.join("DB_CONFIG")).unwrap();
//! assert_eq!(config.trim(), format!("mutex_set_max {MUTEX_MAX}"));
//! // A server made with it has the room; jackd2's default leaves a few hundred deaths.
//! assert!(Room { max: MUTEX_MAX, in_use: 91 }.is_ample());
//! assert!(!Room { max: 0, in_use: 91 }.is_ample());
//! # std::fs::remove_dir_all(&env).unwrap();
//! ```

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The mutex limit [`make_room`] asks for: 9 per killed client (measured) leaves
/// room for about 11,000 deaths in one server's life; 12.8 MB of `/dev/shm` when
/// all are used.
pub const MUTEX_MAX: u32 = 100_000;

/// The setting Berkeley DB reads from `DB_CONFIG` when it creates an environment.
const SETTING: &str = "mutex_set_max";

/// The largest `DB_CONFIG` [`make_room`] reads.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Berkeley DB's statistics tools, newest name first (package `db5.3-util`).
const STAT_TOOLS: [&str; 2] = ["db5.3_stat", "db_stat"];

/// Makes sure the next metadata environment created in `env` gets room for
/// [`MUTEX_MAX`] mutexes: creates the directory as jackd2 does (mode 0770) and
/// writes `DB_CONFIG` there. A `DB_CONFIG` of the user's that sets no mutex limit
/// gets the line appended; one that sets its own limit is left alone.
///
/// Returns whether it changed anything.
pub fn make_room(env: &Path) -> std::io::Result<bool> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o770)
        .create(env)?;
    let config = env.join("DB_CONFIG");
    let existing = match std::fs::symlink_metadata(&config) {
        // Read only a plain file of sane size: a FIFO would block, a huge file
        // would fill memory, and Berkeley DB's own are a few lines.
        Ok(meta) if !meta.is_file() || meta.len() > MAX_CONFIG_BYTES => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not a plain file under {MAX_CONFIG_BYTES} bytes",
                    config.display()
                ),
            ))
        }
        Ok(_) => std::fs::read_to_string(&config)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if existing
        .lines()
        .any(|line| line.split_whitespace().next() == Some(SETTING))
    {
        return Ok(false);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config)?;
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(file, "{separator}{SETTING} {MUTEX_MAX}")?;
    Ok(true)
}

/// The mutexes of a running metadata environment, as `db_stat -x` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    /// The limit the environment was made with; 0 is Berkeley DB's default, which
    /// jackd2 gets without a `DB_CONFIG` (1,561 mutexes measured).
    pub max: u32,
    /// The mutexes held, by live openers and by dead ones alike.
    pub in_use: u32,
}

impl Room {
    /// Whether the environment was made with at least [`MUTEX_MAX`] mutexes.
    pub fn is_ample(&self) -> bool {
        self.max >= MUTEX_MAX
    }
}

/// How much room the metadata environment in `env` has now, read with Berkeley
/// DB's `db_stat -x`; `None` when there is no environment or no tool to read it.
pub fn room(env: &Path) -> Option<Room> {
    let tool = crate::metadata_deadlocks::first_in_path(&STAT_TOOLS)?;
    let output = Command::new(tool)
        .arg("-x")
        .arg("-h")
        .arg(env)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_room(&String::from_utf8_lossy(&output.stdout))
}

/// Reads the `Mutex max count` and `Mutex in-use count` lines of `db_stat -x`.
fn parse_room(stat: &str) -> Option<Room> {
    let count = |label: &str| {
        stat.lines().find_map(|line| {
            let (value, rest) = line.split_once('\t')?;
            (rest.trim() == label).then(|| value.trim().parse::<u32>().ok())?
        })
    };
    Some(Room {
        max: count("Mutex max count")?,
        in_use: count("Mutex in-use count")?,
    })
}

/// Says in the log what a newly made environment in `env` has room for: a warning
/// when the server that made it had no `DB_CONFIG` (it started before `modsynthd`
/// first wrote one), with what to do.
pub fn report(env: &Path) {
    match room(env) {
        Some(room) if room.is_ample() => tracing::debug!(
            "jackd2's metadata database has room for {} mutexes ({} in use)",
            room.max,
            room.in_use
        ),
        Some(room) => tracing::warn!(
            "this JACK server's metadata database has room for only ~170 killed JACK \
             clients ({} of ~1,561 mutexes in use); past that, new modules lose their \
             names and pools stop filling. Restart the JACK server once: the next one \
             gets room for ~11,000 ({} is written)",
            room.in_use,
            env.join("DB_CONFIG").display()
        ),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("modsynth-room-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn room_is_made_once_and_a_users_own_limit_is_kept() {
        let env = scratch("once");
        assert!(make_room(&env).unwrap());
        assert!(!make_room(&env).unwrap());
        let text = std::fs::read_to_string(env.join("DB_CONFIG")).unwrap();
        assert_eq!(text.matches(SETTING).count(), 1);

        let users = scratch("users");
        std::fs::create_dir_all(&users).unwrap();
        std::fs::write(users.join("DB_CONFIG"), "mutex_set_max 5000").unwrap();
        assert!(!make_room(&users).unwrap());
        assert_eq!(
            std::fs::read_to_string(users.join("DB_CONFIG")).unwrap(),
            "mutex_set_max 5000"
        );
        std::fs::write(users.join("DB_CONFIG"), "x".repeat(100_000)).unwrap();
        assert!(make_room(&users).is_err(), "a huge DB_CONFIG is not read");
        std::fs::write(users.join("DB_CONFIG"), "set_cachesize 0 1048576 1").unwrap();
        assert!(make_room(&users).unwrap());
        assert_eq!(
            std::fs::read_to_string(users.join("DB_CONFIG")).unwrap(),
            format!("set_cachesize 0 1048576 1\n{SETTING} {MUTEX_MAX}\n")
        );
        let _ = std::fs::remove_dir_all(&env);
        let _ = std::fs::remove_dir_all(&users);
    }

    #[test]
    fn db_stat_output_gives_the_limit_and_the_mutexes_in_use() {
        let stat = "32KB\tMutex region size\n200\tMutex total count\n20000\tMutex max count\n\
                    1012\tMutex in-use count\n91\tMutex maximum in-use count\n";
        assert_eq!(
            parse_room(stat),
            Some(Room {
                max: 20000,
                in_use: 1012
            })
        );
        assert_eq!(parse_room("garbage\n"), None);
    }
}
