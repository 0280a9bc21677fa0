//! The sets directory: the only place OSC `/set/load` and `/set/save` reach.
//!
//! A sender names a set (`gig.toml`), never a path: names are one file name
//! ([`check_set_name`]), opened relative to the directory's descriptor with
//! `O_NOFOLLOW`, so neither `..`, an absolute path nor a symlink leads out of it.
//! Only regular files of at most [`MAX_SET_FILE`] bytes are read, opened
//! non-blocking (a FIFO cannot hold the open), and the read runs on a thread of its
//! own that the core waits for at most [`READ_TIMEOUT`]: `/dev/zero` once grew the
//! supervisor to 23 GB, and a FIFO blocked the core forever. Errors name the set
//! and what is wrong with the file, never its content.
//!
//! Saving writes a temporary file next to the set (`O_EXCL`), syncs it and renames
//! it over the old one, so a crash never leaves half a set.

use modsynth_protocol::setfile::{check_set_name, MAX_SET_FILE};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long the core waits for a set file to be read. A regular file of 1 MiB
/// reads in well under 10 ms; only a stalled file system takes longer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The sets directory, opened.
pub struct SetsDir {
    path: PathBuf,
    dir: Arc<OwnedFd>,
    /// A read still running (it timed out): the next one is refused rather than
    /// piling up threads stuck on the same stalled file system.
    reading: Arc<AtomicBool>,
}

impl SetsDir {
    /// Opens `path`, creating it (mode 0700) if needed. It must be a directory
    /// owned by this user: set files saved there are read back and played.
    pub fn open(path: &Path) -> Result<SetsDir, String> {
        let shown = path.display();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| format!("cannot create the sets dir {shown}: {e}"))?;
        let dir = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open the sets dir {shown}: {e}"))?;
        let st = rfs::fstat(&dir).map_err(|e| format!("{shown}: {e}"))?;
        if st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(format!(
                "the sets dir {shown} belongs to another user (uid {}); pick another \
                 --sets-dir",
                st.st_uid
            ));
        }
        Ok(SetsDir {
            path: path.to_path_buf(),
            dir: Arc::new(dir),
            reading: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads set `name` as text, within [`READ_TIMEOUT`].
    pub fn read(&self, name: &str) -> Result<String, String> {
        check_set_name(name)?;
        if self.reading.swap(true, Ordering::AcqRel) {
            return Err(format!(
                "{name}: an earlier set file read has not finished (stalled file system?)"
            ));
        }
        let (tx, rx) = mpsc::channel();
        let (dir, reading, owned) = (self.dir.clone(), self.reading.clone(), name.to_string());
        let spawned = std::thread::Builder::new()
            .name("set-read".into())
            .spawn(move || {
                let result = read_confined(&dir, &owned);
                reading.store(false, Ordering::Release);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            self.reading.store(false, Ordering::Release);
            return Err(format!("{name}: cannot start reading it: {e}"));
        }
        rx.recv_timeout(READ_TIMEOUT).unwrap_or_else(|_| {
            Err(format!(
                "{name}: reading it took more than {} s",
                READ_TIMEOUT.as_secs()
            ))
        })
    }

    /// Replaces set `name` with `contents`, atomically.
    pub fn write(&self, name: &str, contents: &str) -> Result<(), String> {
        check_set_name(name)?;
        if contents.len() as u64 > MAX_SET_FILE {
            return Err(format!("{name}: the set is larger than 1 MiB"));
        }
        let tmp = format!(".{name}.tmp{}", std::process::id());
        let write = || -> Result<(), Errno> {
            let fd = rfs::openat(
                &*self.dir,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
            let mut file = std::fs::File::from(fd);
            file.write_all(contents.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            // rename replaces a symlink called `name` itself, never its target.
            rfs::renameat(&*self.dir, &tmp, &*self.dir, name)?;
            rfs::fsync(&*self.dir)
        };
        write().map_err(|e| {
            let _ = rfs::unlinkat(&*self.dir, &tmp, AtFlags::empty());
            format!("cannot save {name} in {}: {e}", self.path.display())
        })
    }
}

/// Opens `name` in `dir` without following a symlink or blocking on a FIFO,
/// checks it is a regular file of at most 1 MiB, and reads it as UTF-8.
fn read_confined(dir: &OwnedFd, name: &str) -> Result<String, String> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NOENT => format!("no set '{name}' in the sets dir"),
        Errno::LOOP => format!("{name} is a symlink; sets are read only from regular files"),
        e => format!("{name}: cannot open it: {e}"),
    })?;
    let st = rfs::fstat(&fd).map_err(|e| format!("{name}: {e}"))?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(format!("{name} is not a regular file"));
    }
    if st.st_size as u64 > MAX_SET_FILE {
        return Err(format!("{name} is larger than 1 MiB; it is not a set file"));
    }
    let mut text = Vec::new();
    // Never more than the limit, whatever the size said (a file can grow).
    std::fs::File::from(fd)
        .take(MAX_SET_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("{name}: cannot read it: {e}"))?;
    if text.len() as u64 > MAX_SET_FILE {
        return Err(format!("{name} is larger than 1 MiB; it is not a set file"));
    }
    String::from_utf8(text).map_err(|_| format!("{name} is not text (UTF-8); it is not a set file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p =
                std::env::temp_dir().join(format!("modsynth-setsdir-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn sets_round_trip_and_nothing_is_written_outside() {
        let s = Scratch::new("roundtrip");
        let sets = SetsDir::open(&s.0.join("sets")).unwrap();
        sets.write("a.toml", "# set\n").unwrap();
        assert_eq!(sets.read("a.toml").unwrap(), "# set\n");
        sets.write("a.toml", "# new\n").unwrap();
        assert_eq!(sets.read("a.toml").unwrap(), "# new\n");
        for bad in ["../x", "/tmp/x", "a/../../x", "..", ".", ".a.toml", "x\n"] {
            assert!(sets.write(bad, "x").is_err(), "{bad:?} written");
            assert!(sets.read(bad).is_err(), "{bad:?} read");
        }
        assert!(!s.0.join("x").exists());
        let names: Vec<_> = std::fs::read_dir(s.0.join("sets"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("a.toml")],
            "no temp left"
        );
    }

    #[test]
    fn devices_fifos_directories_symlinks_and_big_files_are_refused_quickly() {
        let s = Scratch::new("hostile");
        let dir = s.0.join("sets");
        let sets = SetsDir::open(&dir).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.toml")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.toml")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::create_dir(dir.join("dir.toml")).unwrap();
        std::fs::write(dir.join("big.toml"), vec![b'#'; MAX_SET_FILE as usize + 1]).unwrap();
        std::fs::write(dir.join("bin.toml"), [0xff, 0xfe, 0]).unwrap();
        let cases = [
            ("zero.toml", "symlink"),
            ("passwd.toml", "symlink"),
            ("fifo.toml", "not a regular file"),
            ("dir.toml", "not a regular file"),
            ("big.toml", "larger than 1 MiB"),
            ("bin.toml", "not text"),
            ("missing.toml", "no set 'missing.toml'"),
        ];
        for (name, want) in cases {
            let started = std::time::Instant::now();
            let e = sets.read(name).unwrap_err();
            assert!(e.contains(want), "{name}: {e}");
            assert!(!e.contains("root:"), "{name}: quotes content: {e}");
            assert!(started.elapsed() <= READ_TIMEOUT + Duration::from_millis(500));
        }
        // Saving over a symlink replaces the link, not what it points to.
        let target = s.0.join("outside.toml");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("link.toml")).unwrap();
        sets.write("link.toml", "# set\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn a_sets_dir_that_is_a_symlink_is_refused() {
        let s = Scratch::new("dirlink");
        std::os::unix::fs::symlink("/tmp", s.0.join("sets")).unwrap();
        assert!(SetsDir::open(&s.0.join("sets")).is_err());
    }
}
