//! POSIX shared-memory segments: create (0600, exclusive), open, unlink, and the
//! naming rule `/<instance>-<owner>-<kind>`.

use crate::ShmError;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
use nix::sys::stat::{fstat, Mode};
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

/// Longest segment name accepted, leading `/` included.
const MAX_NAME_LEN: usize = 255;

/// Checks that `name` is a valid segment name: `/` then `<instance>-<owner>-<kind>`
/// (three non-empty parts, more `-` allowed inside the owner), at most 255 bytes,
/// only ASCII letters, digits, `.`, `_` and `-`.
///
/// ```
/// use modsynth_shm::check_name;
///
/// assert!(check_name("/live-vco1-state").is_ok());
/// assert!(check_name("live-vco1-state").is_err()); // no leading '/'
/// assert!(check_name("/live/vco1-state").is_err()); // second '/'
/// assert!(check_name("/live-state").is_err()); // no owner
/// ```
pub fn check_name(name: &str) -> Result<(), ShmError> {
    let bad = |reason: &str| {
        Err(ShmError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    let Some(rest) = name.strip_prefix('/') else {
        return bad("it must start with '/'");
    };
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("it is longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = rest
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!("it contains {c:?}"));
    }
    let parts: Vec<&str> = rest.split('-').collect();
    if parts.len() < 3 || parts[0].is_empty() || parts[parts.len() - 1].is_empty() {
        return bad("it needs three non-empty parts: instance, owner and kind");
    }
    if parts[1..parts.len() - 1].join("-").is_empty() {
        return bad("the owner part is empty");
    }
    Ok(())
}

/// Builds and checks the segment name `/<instance>-<owner>-<kind>`.
///
/// ```
/// use modsynth_shm::segment_name;
///
/// assert_eq!(segment_name("live", "vco1", "state")?, "/live-vco1-state");
/// assert!(segment_name("live", "vco 1", "state").is_err());
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
pub fn segment_name(instance: &str, owner: &str, kind: &str) -> Result<String, ShmError> {
    let name = format!("/{instance}-{owner}-{kind}");
    check_name(&name)?;
    Ok(name)
}

/// A named POSIX shared-memory segment, mapped shared and read/write in this process.
///
/// Dropping a `Segment` unmaps it but does **not** unlink it: another process may be
/// about to continue what it holds. Remove the name with [`Segment::unlink`].
///
/// Segments are meant to be shared by processes of one user (mode 0600): a process
/// that shrinks a segment others have mapped makes their accesses past the new end
/// fault (SIGBUS). Nothing in modsynth resizes a segment after creating it.
///
/// The mapping is populated at map time (`MAP_POPULATE`), so a real-time thread that
/// touches it later does not take page faults for it.
///
/// ```
/// use modsynth_shm::Segment;
///
/// let name = format!("/doc{}-w07-scratch", std::process::id());
/// let a = Segment::create(&name, 4096)?;
/// let b = Segment::open(&name)?;
/// // SAFETY (doc): both mappings are at least 1 byte long and nobody else uses them.
/// unsafe { a.as_ptr().write(42) };
/// assert_eq!(unsafe { b.as_ptr().read() }, 42);
/// assert_eq!(b.len(), 4096);
/// Segment::unlink(&name)?;
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    name: String,
}

// SAFETY: a `Segment` owns its mapping (unmapped once, in Drop) and hands out only a
// raw pointer; every read or write through it is the caller's `unsafe` code, which
// must synchronize anyway because other processes share the memory. Moving or sharing
// the handle between threads adds nothing that cross-process sharing does not.
unsafe impl Send for Segment {}
// SAFETY: see `Send`; `&Segment` exposes only the address, the length and the name.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates segment `name` of `size` bytes (zero-filled), mode 0600. Fails with
    /// [`ShmError::AlreadyExists`] if the name is taken; on any later failure the new
    /// name is unlinked again.
    ///
    /// ```
    /// use modsynth_shm::Segment;
    ///
    /// let name = format!("/doc{}-w01-create", std::process::id());
    /// let seg = Segment::create(&name, 100)?;
    /// assert_eq!((seg.name(), seg.len()), (name.as_str(), 100));
    /// assert!(Segment::create(&name, 100).is_err());
    /// Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn create(name: &str, size: usize) -> Result<Segment, ShmError> {
        check_name(name)?;
        let Some(len) = NonZeroUsize::new(size) else {
            return Err(ShmError::InvalidName {
                name: name.to_string(),
                reason: "a segment cannot be 0 bytes long".to_string(),
            });
        };
        let fd = shm_open(
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| match e {
            Errno::EEXIST => ShmError::AlreadyExists {
                name: name.to_string(),
            },
            e => ShmError::io(format!("create shared memory {name}"), e),
        })?;
        let mapped = i64::try_from(size)
            .map_err(|_| Errno::EFBIG)
            .and_then(|size| nix::unistd::ftruncate(&fd, size))
            .map_err(|e| ShmError::io(format!("size shared memory {name} to {size} bytes"), e))
            .and_then(|()| map(&fd, name, len));
        match mapped {
            Ok(ptr) => Ok(Segment {
                ptr,
                len: size,
                name: name.to_string(),
            }),
            Err(e) => {
                let _ = shm_unlink(name);
                Err(e)
            }
        }
    }

    /// Opens the existing segment `name`; its length is the segment's current size.
    ///
    /// ```
    /// use modsynth_shm::{Segment, ShmError};
    ///
    /// let name = format!("/doc{}-w02-open", std::process::id());
    /// assert!(matches!(Segment::open(&name), Err(ShmError::NotFound { .. })));
    /// Segment::create(&name, 64)?;
    /// assert_eq!(Segment::open(&name)?.len(), 64);
    /// Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn open(name: &str) -> Result<Segment, ShmError> {
        check_name(name)?;
        let fd =
            shm_open(name, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).map_err(
                |e| match e {
                    Errno::ENOENT => ShmError::NotFound {
                        name: name.to_string(),
                    },
                    e => ShmError::io(format!("open shared memory {name}"), e),
                },
            )?;
        let size = fstat(&fd)
            .map_err(|e| ShmError::io(format!("stat shared memory {name}"), e))?
            .st_size;
        let size = usize::try_from(size).unwrap_or(0);
        let Some(len) = NonZeroUsize::new(size) else {
            return Err(ShmError::corrupt(
                name,
                "it is empty (its creator died before sizing it?)",
            ));
        };
        let ptr = map(&fd, name, len)?;
        Ok(Segment {
            ptr,
            len: size,
            name: name.to_string(),
        })
    }

    /// Removes the name `name` from the system. Mappings that exist stay valid until
    /// they are dropped; a later [`Segment::open`] fails.
    ///
    /// ```
    /// use modsynth_shm::Segment;
    ///
    /// let name = format!("/doc{}-w03-unlink", std::process::id());
    /// let seg = Segment::create(&name, 8)?;
    /// Segment::unlink(&name)?;
    /// assert!(Segment::open(&name).is_err());
    /// assert_eq!(seg.len(), 8); // still mapped here
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn unlink(name: &str) -> Result<(), ShmError> {
        check_name(name)?;
        shm_unlink(name).map_err(|e| match e {
            Errno::ENOENT => ShmError::NotFound {
                name: name.to_string(),
            },
            e => ShmError::io(format!("unlink shared memory {name}"), e),
        })
    }

    /// Unlinks `name` found by a scan of `/dev/shm`, only if it is one of ours:
    /// owned by this user and starting with modsynth's magic (`b"modsynth"`), or
    /// with none yet (all zero: a create that died before it finished). Anything
    /// else that merely matches an instance's name prefix (another program's
    /// segment, another user's) is left alone with [`ShmError::Corrupt`] saying
    /// why. Names come from a directory listing, so the check reads the file
    /// without following a symlink or blocking.
    ///
    /// ```
    /// use modsynth_shm::{Segment, ShmError};
    ///
    /// let ours = format!("/doc{}-w01-ours", std::process::id());
    /// let _seg = Segment::create(&ours, 64)?;
    /// Segment::unlink_if_ours(&ours)?;
    /// let theirs = format!("doc{}-w01-theirs", std::process::id());
    /// std::fs::write(format!("/dev/shm/{theirs}"), b"not a modsynth segment").unwrap();
    /// let kept = Segment::unlink_if_ours(&format!("/{theirs}"));
    /// assert!(matches!(kept, Err(ShmError::Corrupt { .. })));
    /// # std::fs::remove_file(format!("/dev/shm/{theirs}")).unwrap();
    /// # Ok::<(), ShmError>(())
    /// ```
    pub fn unlink_if_ours(name: &str) -> Result<(), ShmError> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        check_name(name)?;
        let path = format!("/dev/shm{name}");
        let not_ours = |reason: String| ShmError::Corrupt {
            name: name.to_string(),
            reason: format!("{reason}; left alone"),
        };
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ShmError::NotFound {
                    name: name.to_string(),
                })
            }
            Err(e) => return Err(ShmError::io(format!("check {name} before unlinking"), e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| ShmError::io(format!("check {name} before unlinking"), e))?;
        if !meta.is_file() {
            return Err(not_ours("it is not a regular file".into()));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(not_ours(format!("it belongs to uid {}", meta.uid())));
        }
        let mut magic = [0u8; 8];
        let n = file.read(&mut magic).unwrap_or(0);
        if n == 8 && magic != *b"modsynth" && magic != [0; 8] {
            return Err(not_ours("it does not start with modsynth's magic".into()));
        }
        Segment::unlink(name)
    }

    /// The first byte of the mapping (page-aligned). Reading or writing through it is
    /// `unsafe`: other processes share these bytes.
    ///
    /// ```
    /// # use modsynth_shm::Segment;
    /// # let name = format!("/doc{}-w04-ptr", std::process::id());
    /// let seg = Segment::create(&name, 16)?;
    /// assert_eq!(seg.as_ptr() as usize % 4096, 0);
    /// # Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length of the mapping in bytes (never 0).
    ///
    /// ```
    /// # use modsynth_shm::Segment;
    /// # let name = format!("/doc{}-w05-len", std::process::id());
    /// assert_eq!(Segment::create(&name, 3000)?.len(), 3000);
    /// # Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: segments of 0 bytes cannot be created or opened.
    ///
    /// ```
    /// # use modsynth_shm::Segment;
    /// # let name = format!("/doc{}-w06-empty", std::process::id());
    /// assert!(!Segment::create(&name, 1)?.is_empty());
    /// # Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment's name, `/<instance>-<owner>-<kind>`.
    ///
    /// ```
    /// # use modsynth_shm::Segment;
    /// let name = format!("/doc{}-w08-name", std::process::id());
    /// assert_eq!(Segment::create(&name, 1)?.name(), name);
    /// # Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, unmapped only
        // here; pointers handed out by `as_ptr` must not outlive the `Segment` (their
        // users' unsafe code promises that).
        unsafe {
            let _ = munmap(self.ptr.cast::<c_void>(), self.len);
        }
    }
}

fn map(fd: &OwnedFd, name: &str, len: NonZeroUsize) -> Result<NonNull<u8>, ShmError> {
    // SAFETY: a fresh shared mapping at an address the kernel picks cannot overlap
    // any Rust object; `fd` is an open shared-memory object of at least `len` bytes
    // (ftruncate'd or fstat'ed just before). The fd may be closed afterwards: the
    // mapping keeps the object alive.
    let ptr = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
            fd,
            0,
        )
    }
    .map_err(|e| ShmError::io(format!("map shared memory {name}"), e))?;
    Ok(ptr.cast::<u8>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Names;

    #[test]
    fn names_follow_instance_owner_kind() {
        for good in ["/a-b-c", "/live-vco-1-state", "/t1x2-w07.x-status_1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = format!("/a-{}-c", "b".repeat(260));
        for bad in [
            "", "/", "a-b-c", "/a/b-c-d", "/a-b", "/-b-c", "/a-b-", "/a--c", "/a-b c-d", "/a-ü-c",
            &long,
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(
                err.to_string().contains("/<instance>-<owner>-<kind>"),
                "{err}"
            );
        }
    }

    #[test]
    fn create_then_open_share_bytes() {
        let names = Names::new();
        let name = names.next("share");
        let a = Segment::create(&name, 10_000).unwrap();
        let b = Segment::open(&name).unwrap();
        assert_eq!(b.len(), 10_000);
        // SAFETY: both mappings are 10 000 bytes; this test is their only user.
        unsafe {
            a.as_ptr().add(9_999).write(7);
            assert_eq!(b.as_ptr().add(9_999).read(), 7);
            b.as_ptr().write(9);
            assert_eq!(a.as_ptr().read(), 9);
        }
    }

    #[test]
    fn create_is_exclusive_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let names = Names::new();
        let name = names.next("excl");
        let _a = Segment::create(&name, 1).unwrap();
        let err = Segment::create(&name, 1).unwrap_err();
        assert!(matches!(err, ShmError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("shm gc"));
        let mode = std::fs::metadata(format!("/dev/shm{name}"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn zero_size_and_missing_are_errors() {
        let names = Names::new();
        let name = names.next("zero");
        assert!(Segment::create(&name, 0).is_err());
        assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists());
        assert!(matches!(
            Segment::open(&name),
            Err(ShmError::NotFound { .. })
        ));
        assert!(matches!(
            Segment::unlink(&name),
            Err(ShmError::NotFound { .. })
        ));
    }

    #[test]
    fn drop_unmaps_but_does_not_unlink() {
        let names = Names::new();
        let name = names.next("keep");
        // SAFETY: the mapping is 8 bytes and used only here.
        unsafe { Segment::create(&name, 8).unwrap().as_ptr().write(5) };
        let again = Segment::open(&name).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { again.as_ptr().read() }, 5);
        Segment::unlink(&name).unwrap();
        assert!(Segment::open(&name).is_err());
    }
}
