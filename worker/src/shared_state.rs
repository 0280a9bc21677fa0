//! A module's state in shared memory, so that a standby can continue it.
//!
//! The segment is a [`modsynth_shm::StateSegment`] (header, two state slots, the large
//! buffer); this module puts [`ModuleState`]s in its slots. Every period the owner
//! reads its state from the published slot `s` (or keeps the copy it wrote last),
//! writes the new state to slot `1 - s` and publishes `(frame, 1 - s)` with a release
//! store. A standby that takes over reads the last published slot and continues
//! exactly where the last completed period left off.
//!
//! Fencing: the segment's `owner` word holds the id (pid) of the one worker allowed
//! to play the module. Taking over is a compare-and-swap from the old owner, so two
//! workers never play the same module: a primary that was merely slow sees it lost
//! ownership and goes silent. Publishing is a compare-and-swap too
//! ([`SharedState::publish_after`]): it succeeds only if nobody published since this
//! writer's last publication, so a primary stopped between its owner check and its
//! publish cannot overwrite what the new owner published.

use crate::dsp::ModuleState;
use modsynth_shm::{Handover, Segment, StateSegment};
use std::mem::{offset_of, size_of};

/// A mapped state segment holding [`ModuleState`]s.
pub struct SharedState {
    segment: StateSegment,
}

impl SharedState {
    /// Creates segment `name` (mode 0600, must not exist) holding `state` in both
    /// slots and `large` as the large buffer, owned by `owner`.
    pub fn create(
        name: &str,
        state: &ModuleState,
        large: &[f32],
        owner: u64,
    ) -> Result<SharedState, String> {
        let segment = StateSegment::create(
            name,
            state.type_index,
            size_of::<ModuleState>(),
            large.len(),
        )
        .map_err(|e| e.to_string())?;
        let shared = SharedState { segment };
        // SAFETY: the fresh segment's slots are 64-aligned and sized for a
        // ModuleState, and its buffer holds `large.len()` f32s; nobody else maps it
        // before we reply to the supervisor, which only then starts a standby.
        unsafe {
            shared.slot_ptr(0).write(*state);
            shared.slot_ptr(1).write(*state);
            std::ptr::copy_nonoverlapping(large.as_ptr(), shared.segment.large(), large.len());
        }
        shared.segment.try_take_ownership(0, owner);
        shared.segment.publish(0, 0);
        Ok(shared)
    }

    /// Opens segment `name`, which must hold a module of catalog type `type_index`.
    pub fn open(name: &str, type_index: u32) -> Result<SharedState, String> {
        let segment = StateSegment::open(name).map_err(|e| e.to_string())?;
        segment
            .expect_layout(type_index, size_of::<ModuleState>(), segment.large_len())
            .map_err(|e| e.to_string())?;
        let shared = SharedState { segment };
        // Both slots must hold a kernel of that type before either is ever read as a
        // ModuleState: the kernel's enum tag is checked as a plain u32.
        for slot in 0..2 {
            // SAFETY: the slot is in bounds and sized for a ModuleState (checked by
            // expect_layout); reading a u32 is valid for any bits.
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
        Ok(shared)
    }

    fn slot_ptr(&self, slot: usize) -> *mut ModuleState {
        self.segment.slot(slot & 1) as *mut ModuleState
    }

    /// The id of the worker that may play the module.
    pub fn owner(&self) -> u64 {
        self.segment.owner()
    }

    /// Takes ownership from `from` (the fencing compare-and-swap): true if it was
    /// `from` and is now `to`.
    pub fn take_over(&self, from: u64, to: u64) -> bool {
        self.segment.try_take_ownership(from, to)
    }

    /// Plans a handover of the module (see [`modsynth_shm::Handover`]). One atomic
    /// store: real-time safe.
    pub fn set_handover(&self, handover: Handover) {
        self.segment.set_handover(handover);
    }

    /// The planned handover, if any. One atomic load: real-time safe.
    pub fn handover(&self) -> Option<Handover> {
        self.segment.handover()
    }

    /// Removes the planned handover if it is still `planned`; whether it did.
    pub fn clear_handover(&self, planned: Handover) -> bool {
        self.segment.clear_handover(planned)
    }

    /// Marks the period starting at `frame` as begun by owner `owner`, so the
    /// supervisor can tell a worker hung inside a period from one the server is not
    /// calling (see `StateSegment::enter`). One atomic store: real-time safe.
    pub fn enter(&self, frame: u32, owner: u64) {
        self.segment.enter(frame, owner);
    }

    /// `(frame, slot)` of the last completed period.
    pub fn published(&self) -> (u32, usize) {
        let (frame, slot) = self.segment.published();
        (frame, slot as usize & 1)
    }

    /// The state in `slot` (only meaningful once published), if its kernel is of
    /// module type `type_index`. The segment is another process's memory: its
    /// bytes are copied first and the enum tag is checked in the private copy,
    /// so no bits written there can make an invalid `ModuleState` here.
    pub fn load(&self, slot: usize, type_index: u32) -> Option<ModuleState> {
        let mut copy = std::mem::MaybeUninit::<ModuleState>::uninit();
        // SAFETY: the slot is in bounds and sized for a ModuleState (checked by
        // open/create), the copy is ours; copying bytes is valid for any bits.
        let tag = unsafe {
            std::ptr::copy_nonoverlapping(
                self.slot_ptr(slot) as *const u8,
                copy.as_mut_ptr() as *mut u8,
                size_of::<ModuleState>(),
            );
            (copy.as_ptr() as *const u8)
                .add(offset_of!(ModuleState, kernel))
                .cast::<u32>()
                .read_unaligned()
        };
        if tag != type_index {
            return None;
        }
        // SAFETY: every field of ModuleState is plain numbers (any bits valid)
        // except the kernel's enum tag, checked above to be the variant of
        // `type_index` (catalog order is the variant order).
        Some(unsafe { copy.assume_init() })
    }

    /// Writes `state` to the slot after `last` (what this writer saw published last,
    /// `(frame, slot)`) and publishes it as the state after frame `frame`, but only
    /// if `last` is still what is published (compare-and-swap): a writer that lost
    /// the module cannot overwrite what its new owner published since. Returns the
    /// new `(frame, slot)`, or `None` when the fence refused it; the writer must then
    /// re-read [`published`](Self::published) before it writes again.
    pub fn publish_after(
        &self,
        last: (u32, usize),
        state: &ModuleState,
        frame: u32,
    ) -> Option<(u32, usize)> {
        let slot = 1 - (last.1 & 1);
        // Most of the fence: someone published since, so `slot` may be the one they
        // published; not a byte of it is ours to write. (The compare-and-swap below
        // closes the rest, but for the write between this check and it.)
        if self.segment.published() != (last.0, last.1 as u32) {
            return None;
        }
        // SAFETY: only the owner calls this (it checked the owner word this period),
        // and `slot` is not the published one while `last` is, so no reader reads it
        // as a whole state; a late writer that lost the module may still write it
        // (see modsynth_shm::StateSegment on what fencing does not guarantee).
        unsafe { self.slot_ptr(slot).write(*state) };
        self.segment
            .publish_from((last.0, last.1 as u32), (frame, slot as u32))
            .then_some((frame, slot))
    }

    /// The module's large buffer (the delay line).
    ///
    /// # Safety
    /// Only the owner may call this, and must not hold two of these at once: the
    /// fencing protocol makes the owner the only writer.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn large(&self) -> &mut [f32] {
        // SAFETY: the segment's buffer holds `large_len` f32s, 64-aligned; exclusivity
        // is the caller's promise above.
        unsafe { std::slice::from_raw_parts_mut(self.segment.large(), self.segment.large_len()) }
    }

    /// Removes segment `name` (mappings stay valid until unmapped).
    pub fn unlink(name: &str) -> Result<(), String> {
        Segment::unlink(name).map_err(|e| e.to_string())
    }
}
