//! Unique segment names for tests, unlinked when the test ends (even on panic).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The prefix of every segment this crate's tests make: `ms<pid>t`.
pub fn test_prefix() -> String {
    format!("mstest{}x", std::process::id())
}

/// A fresh instance name, unique in this test process.
pub fn unique_instance() -> String {
    format!("{}{}", test_prefix(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Hands out segment names of one fresh instance and unlinks them all on drop.
pub struct Names {
    pub instance: String,
    made: RefCell<Vec<String>>,
}

impl Names {
    pub fn new() -> Names {
        Names::with_instance(unique_instance())
    }

    pub fn with_instance(instance: String) -> Names {
        Names {
            instance,
            made: RefCell::new(Vec::new()),
        }
    }

    /// `/<instance>-<owner>-t` for a fresh owner `owner`.
    pub fn next(&self, owner: &str) -> String {
        self.with(owner, "t")
    }

    /// `/<instance>-<owner>-<kind>`, remembered for cleanup.
    pub fn with(&self, owner: &str, kind: &str) -> String {
        let name = format!("/{}-{owner}-{kind}", self.instance);
        self.made.borrow_mut().push(name.clone());
        name
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for name in self.made.borrow().iter() {
            let _ = nix::sys::mman::shm_unlink(name.as_str());
        }
        // Anything else a test made under this instance (defensive).
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            let prefix = format!("{}-", self.instance);
            for entry in dir.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if file.starts_with(&prefix) {
                    let _ = nix::sys::mman::shm_unlink(format!("/{file}").as_str());
                }
            }
        }
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique_instance());
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
