//! A module's state in POSIX shared memory, so that a standby can continue it.
//!
//! Layout: a 64-byte header, two state slots (each a [`ModuleState`], 64-aligned),
//! then the module's large buffer (the delay line) as f32s. Every period the owner
//! reads its state from the published slot `s` (or keeps the copy it wrote last),
//! writes the new state to slot `1 - s` and publishes `(frame, 1 - s)` with a release
//! store. A standby that takes over reads the last published slot and continues
//! exactly where the last completed period left off.
//!
//! Fencing: `owner` holds the id (pid) of the one worker allowed to play the module.
//! Taking over is a compare-and-swap from the old owner, so two workers never play
//! the same module: a primary that was merely slow sees it lost ownership and goes
//! silent.

use crate::dsp::ModuleState;
use nix::fcntl::OFlag;
use nix::sys::mman::{mmap, munmap, shm_open, shm_unlink, MapFlags, ProtFlags};
use nix::sys::stat::Mode;
use std::mem::{offset_of, size_of};
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// "msstate1": marks a segment written by this version of the layout.
const MAGIC: u64 = 0x6d73_7374_6174_6531;
const HEADER_SIZE: usize = 64;

#[repr(C)]
struct Header {
    magic: u64,
    owner: AtomicU64,
    /// `(frame << 32) | slot` of the last completed period.
    published: AtomicU64,
    slot_size: u64,
    large_len: u64,
    type_index: u64,
}

const _: () = assert!(size_of::<Header>() <= HEADER_SIZE);

fn slot_stride() -> usize {
    size_of::<ModuleState>().div_ceil(64) * 64
}

fn total_len(large_len: usize) -> usize {
    HEADER_SIZE + 2 * slot_stride() + large_len * size_of::<f32>()
}

/// A mapped state segment.
pub struct SharedState {
    base: NonNull<u8>,
    len: usize,
    large_len: usize,
}

// SAFETY: the mapping is shared memory meant for concurrent use: the header fields
// touched concurrently are atomics, and the slots and the large buffer are only
// written by the current owner (the fencing protocol above), so handing the mapping
// to the real-time thread is sound.
unsafe impl Send for SharedState {}

impl SharedState {
    /// Creates segment `name` (`/...`, mode 0600, must not exist) holding `state` in
    /// both slots and `large` as the large buffer, owned by `owner`.
    pub fn create(
        name: &str,
        state: &ModuleState,
        large: &[f32],
        owner: u64,
    ) -> Result<SharedState, String> {
        let fd = shm_open(
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| format!("cannot create shared memory {name}: {e}"))?;
        let len = total_len(large.len());
        nix::unistd::ftruncate(&fd, len as i64).map_err(|e| {
            let _ = shm_unlink(name);
            format!("cannot size shared memory {name}: {e}")
        })?;
        let shared = Self::map(&fd, len, large.len()).inspect_err(|_| {
            let _ = shm_unlink(name);
        })?;
        // SAFETY: the mapping is `len` bytes, fresh (zeroed by ftruncate) and ours
        // alone: nobody else can have opened it before the header says MAGIC.
        unsafe {
            let header = shared.base.as_ptr() as *mut Header;
            (*header).slot_size = size_of::<ModuleState>() as u64;
            (*header).large_len = large.len() as u64;
            (*header).type_index = state.type_index as u64;
            (*header).owner.store(owner, Ordering::Relaxed);
            (*header).published.store(0, Ordering::Relaxed);
            shared.slot_ptr(0).write(*state);
            shared.slot_ptr(1).write(*state);
            std::ptr::copy_nonoverlapping(large.as_ptr(), shared.large_ptr(), large.len());
            // The magic goes last: an opener that sees it sees everything above.
            std::sync::atomic::fence(Ordering::Release);
            std::ptr::write_volatile(&mut (*header).magic, MAGIC);
        }
        Ok(shared)
    }

    /// Opens segment `name`, which must hold a module of catalog type `type_index`.
    pub fn open(name: &str, type_index: u32) -> Result<SharedState, String> {
        let fd = shm_open(name, OFlag::O_RDWR, Mode::empty())
            .map_err(|e| format!("cannot open shared memory {name}: {e}"))?;
        let len = nix::sys::stat::fstat(&fd)
            .map_err(|e| e.to_string())?
            .st_size as usize;
        if len < HEADER_SIZE + 2 * slot_stride() {
            return Err(format!(
                "{name} is too small ({len} bytes) to be a state segment"
            ));
        }
        let mut shared = Self::map(&fd, len, 0)?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes long; the header is plain
        // integers and atomics, valid for any bit pattern.
        let header = unsafe { &*(shared.base.as_ptr() as *const Header) };
        std::sync::atomic::fence(Ordering::Acquire);
        let large_len = header.large_len as usize;
        if header.magic != MAGIC
            || header.slot_size != size_of::<ModuleState>() as u64
            || header.type_index != type_index as u64
            || total_len(large_len) != len
        {
            return Err(format!(
                "{name} is not a state segment of this module type (or is corrupt)"
            ));
        }
        // Both slots must hold a valid kernel of that type before either is ever read
        // as a ModuleState: the kernel's enum tag is checked as a plain u32.
        for slot in 0..2 {
            // SAFETY: in bounds (checked above); reading a u32 is valid for any bits.
            let tag = unsafe {
                let p = shared.slot_ptr(slot) as *const u8;
                (p.add(offset_of!(ModuleState, kernel)) as *const u32).read_unaligned()
            };
            if tag != type_index {
                return Err(format!(
                    "{name}: slot {slot} does not hold this module type"
                ));
            }
        }
        shared.large_len = large_len;
        Ok(shared)
    }

    fn map(fd: &std::os::fd::OwnedFd, len: usize, large_len: usize) -> Result<SharedState, String> {
        let length = NonZeroUsize::new(len).ok_or("empty segment")?;
        // SAFETY: a fresh shared mapping of a file we hold open, not overlapping any
        // Rust object; it stays valid until `munmap` in Drop.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| format!("cannot map shared memory: {e}"))?;
        Ok(SharedState {
            base: ptr.cast(),
            len,
            large_len,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header (checked or written on open/create)
        // and lives as long as `self`.
        unsafe { &*(self.base.as_ptr() as *const Header) }
    }

    fn slot_ptr(&self, slot: usize) -> *mut ModuleState {
        // SAFETY (of later uses): slot is 0 or 1, so the pointer stays inside the
        // mapping; slots are 64-aligned, enough for ModuleState.
        unsafe {
            self.base
                .as_ptr()
                .add(HEADER_SIZE + (slot & 1) * slot_stride()) as *mut ModuleState
        }
    }

    fn large_ptr(&self) -> *mut f32 {
        // SAFETY (of later uses): the large buffer follows the two slots inside the
        // mapping and is f32-aligned (offsets are multiples of 64).
        unsafe { self.base.as_ptr().add(HEADER_SIZE + 2 * slot_stride()) as *mut f32 }
    }

    /// The id of the worker that may play the module.
    pub fn owner(&self) -> u64 {
        self.header().owner.load(Ordering::Acquire)
    }

    /// Takes ownership from `from` (the fencing compare-and-swap): true if it was
    /// `from` and is now `to`.
    pub fn take_over(&self, from: u64, to: u64) -> bool {
        self.header()
            .owner
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// `(frame, slot)` of the last completed period.
    pub fn published(&self) -> (u32, usize) {
        let p = self.header().published.load(Ordering::Acquire);
        ((p >> 32) as u32, (p & 1) as usize)
    }

    /// The state in `slot` (only meaningful once published).
    pub fn load(&self, slot: usize) -> ModuleState {
        // SAFETY: both slots hold valid ModuleStates of this type (written by create,
        // checked by open, and only ever overwritten with valid ones by the owner).
        unsafe { self.slot_ptr(slot).read() }
    }

    /// Writes `state` to `slot` and publishes it as the state after frame `frame`.
    pub fn publish(&self, slot: usize, state: &ModuleState, frame: u32) {
        // SAFETY: only the owner calls this (fencing), and the slot written is not the
        // published one, so no reader is reading it as a whole state.
        unsafe { self.slot_ptr(slot).write(*state) };
        let packed = ((frame as u64) << 32) | (slot as u64 & 1);
        self.header().published.store(packed, Ordering::Release);
    }

    /// The module's large buffer (the delay line).
    ///
    /// # Safety
    /// Only the owner may call this, and must not hold two of these at once: the
    /// fencing protocol makes the owner the only writer.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn large(&self) -> &mut [f32] {
        // SAFETY: in bounds and aligned (see large_ptr); exclusivity is the caller's
        // promise above.
        unsafe { std::slice::from_raw_parts_mut(self.large_ptr(), self.large_len) }
    }

    /// Removes segment `name` (mappings stay valid until unmapped).
    pub fn unlink(name: &str) -> Result<(), String> {
        shm_unlink(name).map_err(|e| format!("cannot unlink {name}: {e}"))
    }
}

impl Drop for SharedState {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping made in `map`, unmapped only here.
        unsafe {
            let _ = munmap(self.base.cast(), self.len);
        }
    }
}
