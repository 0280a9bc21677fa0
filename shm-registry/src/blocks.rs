//! The typed `#[repr(C)]` block in a module's state segment: [`StateSegment`],
//! whose docs give the byte layout and what fencing does and does not guarantee.

use crate::{Segment, ShmError};
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `b"modsynth"` read as a little-endian u64.
const MAGIC: u64 = u64::from_le_bytes(*b"modsynth");
/// Version of the block layouts in this file; bump on any change.
pub(crate) const LAYOUT_VERSION: u32 = 1;
const KIND_STATE: u32 = 2;
const ALIGN: usize = 64;

/// The header a state segment starts with (see `StateSegment`'s docs).
#[repr(C)]
struct BlockHeader {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    total_len: AtomicU64,
    _reserved: [u64; 5],
}

const _: () = assert!(size_of::<BlockHeader>() == 64);

impl BlockHeader {
    /// Fills the header of a fresh, zeroed segment; `magic` goes last, with Release.
    fn init(&self, kind: u32, total_len: usize) {
        self.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.kind.store(kind, Ordering::Relaxed);
        self.total_len.store(total_len as u64, Ordering::Relaxed);
        self.magic.store(MAGIC, Ordering::Release);
    }
}

/// Checks the common header of `seg` and returns it. `min_len` is the size of the
/// block's fixed part; the mapping must be at least that long before anything in it
/// is read.
fn check_header(seg: &Segment, kind: u32, min_len: usize) -> Result<&BlockHeader, ShmError> {
    let name = seg.name();
    if seg.len() < min_len {
        return Err(ShmError::corrupt(
            name,
            format!(
                "it is {} bytes, too small for a {} ({min_len} bytes)",
                seg.len(),
                kind_name(kind)
            ),
        ));
    }
    // SAFETY: the mapping is page-aligned (so aligned for BlockHeader) and at least
    // `min_len >= size_of::<BlockHeader>()` bytes long; BlockHeader is made of atomics
    // and padding integers, valid for any bit pattern, and only ever accessed through
    // atomic operations, so other processes writing it concurrently is no data race.
    // The reference lives no longer than `seg`'s borrow.
    let header = unsafe { &*(seg.as_ptr() as *const BlockHeader) };
    match header.magic.load(Ordering::Acquire) {
        MAGIC => {}
        0 => {
            return Err(ShmError::corrupt(
                name,
                "it is not initialized (its creator is still setting it up, or died doing so)",
            ))
        }
        other => {
            return Err(ShmError::corrupt(
                name,
                format!("it is not a modsynth block (magic {other:#018x})"),
            ))
        }
    }
    let version = header.version.load(Ordering::Relaxed);
    if version != LAYOUT_VERSION {
        return Err(ShmError::corrupt(
            name,
            format!(
                "it has layout version {version}, this build reads {LAYOUT_VERSION} \
                 (made by another modsynth version)"
            ),
        ));
    }
    let found = header.kind.load(Ordering::Relaxed);
    if found != kind {
        return Err(ShmError::corrupt(
            name,
            format!("it is a {}, not a {}", kind_name(found), kind_name(kind)),
        ));
    }
    let total = header.total_len.load(Ordering::Relaxed);
    if total != seg.len() as u64 {
        return Err(ShmError::corrupt(
            name,
            format!(
                "its header says {total} bytes but the segment is {} bytes",
                seg.len()
            ),
        ));
    }
    Ok(header)
}

fn kind_name(kind: u32) -> String {
    match kind {
        KIND_STATE => "state segment".into(),
        k => format!("block of unknown kind {k}"),
    }
}

fn round_up(n: usize) -> Option<usize> {
    n.checked_add(ALIGN - 1).map(|n| n / ALIGN * ALIGN)
}

/// The fixed part of a state segment (its layout is in `StateSegment`'s docs).
#[repr(C)]
struct StateHeader {
    block: BlockHeader,
    module_type: AtomicU32,
    _reserved0: AtomicU32,
    slot_size: AtomicU64,
    slot_offset: AtomicU64,
    slot_stride: AtomicU64,
    large_offset: AtomicU64,
    large_len: AtomicU64,
    _pad0: [u64; 2],
    owner: AtomicU64,
    handover: AtomicU64,
    _pad1: [u64; 6],
    published: AtomicU64,
    entered: AtomicU64,
    _pad2: [u64; 6],
}

const _: () = {
    assert!(offset_of!(StateHeader, module_type) == 64);
    assert!(offset_of!(StateHeader, slot_size) == 72);
    assert!(offset_of!(StateHeader, large_len) == 104);
    assert!(offset_of!(StateHeader, owner) == 128);
    assert!(offset_of!(StateHeader, handover) == 136);
    assert!(offset_of!(StateHeader, published) == 192);
    assert!(offset_of!(StateHeader, entered) == 200);
    assert!(size_of::<StateHeader>() == 256);
};

/// Where the parts of a state segment go, from the slot size and the large length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StateLayout {
    slot_size: usize,
    slot_stride: usize,
    large_offset: usize,
    large_len: usize,
    total: usize,
}

impl StateLayout {
    fn new(slot_size: usize, large_len: usize) -> Option<StateLayout> {
        let slot_stride = round_up(slot_size.max(1))?;
        let large_offset = slot_stride
            .checked_mul(2)?
            .checked_add(size_of::<StateHeader>())?;
        let total = large_len
            .checked_mul(size_of::<f32>())?
            .checked_add(large_offset)?;
        Some(StateLayout {
            slot_size,
            slot_stride,
            large_offset,
            large_len,
            total,
        })
    }
}

/// A module's state segment: a 256-byte header with the `owner` and `published`
/// words, two state slots of `slot_size` bytes (each 64-aligned) and a large buffer
/// of `large_len` f32s (64-aligned).
///
/// Each period the owner reads slot `s` (from [`published`](Self::published)), writes
/// the next state to slot `1 - s`, then [`publish`](Self::publish)es
/// `(frame_time, 1 - s)`. Whoever maps the segment can continue from the last
/// published slot.
///
/// Aliasing rule for the raw slot and buffer pointers: only the current owner (see
/// [`owner`](Self::owner)) writes the slots and the large buffer, and it never writes
/// the published slot; everyone else only reads the published slot, after an Acquire
/// [`published`](Self::published). Rust references to these bytes must not be kept
/// across periods (another process may write them once ownership moves).
///
/// # Layout
///
/// The segment starts with a 64-byte header, checked on open so that a wrong
/// or corrupt segment is an error, never undefined behaviour:
///
/// | offset | field       | type        | meaning                                    |
/// |-------:|-------------|-------------|--------------------------------------------|
/// | 0      | `magic`     | `AtomicU64` | `b"modsynth"` (LE); stored last, Release   |
/// | 8      | `version`   | `AtomicU32` | 1 (bumped on any layout change)            |
/// | 12     | `kind`      | `AtomicU32` | 2 = state segment (1 is retired)           |
/// | 16     | `total_len` | `AtomicU64` | segment length the creator made            |
/// | 24..64 | reserved    |             | zero                                       |
///
/// The creator fills everything, then stores `magic` with Release; an opener loads it
/// with Acquire, so a segment whose creator has not finished (or died half-way) reads
/// as "not initialized" instead of half-written. All shared fields are atomics: any
/// bit pattern is a valid value, so a hostile or stale segment can give wrong numbers
/// but cannot make this process read out of bounds — every offset is checked against
/// the mapping's real length before it is used.
///
/// The state segment (after the common header):
///
/// | offset | field          | type        | meaning                                 |
/// |-------:|----------------|-------------|-----------------------------------------|
/// | 64     | `module_type`  | `AtomicU32` | catalog index of the module type        |
/// | 72     | `slot_size`    | `AtomicU64` | bytes of one state slot, as requested   |
/// | 80     | `slot_offset`  | `AtomicU64` | 256: where slot 0 starts                |
/// | 88     | `slot_stride`  | `AtomicU64` | `slot_size` rounded up to 64            |
/// | 96     | `large_offset` | `AtomicU64` | where the f32 buffer starts (64-aligned)|
/// | 104    | `large_len`    | `AtomicU64` | number of f32s in it                    |
/// | 128    | `owner`        | `AtomicU64` | worker id that may write audio; 0: none |
/// | 136    | `handover`     | `AtomicU64` | `to << 32 \| frame`: a planned handover; 0: none |
/// | 192    | `published`    | `AtomicU64` | `frame_time << 32 \| slot`              |
/// | 200    | `entered`      | `AtomicU64` | `frame_time << 32 \| owner`: period begun |
/// | 256    | slot 0, slot 1, then the large buffer                                 |
///
/// `owner` and `published` each sit on their own 64-byte cache line: `published` is
/// stored every period by the owner and polled by the standby, `owner` is loaded every
/// period by the owner. `handover` shares `owner`'s line: every worker that maps the
/// segment loads both at the start of every period, and both change only rarely.
/// It was padding (zero) in the first layout, and zero means "none": a segment made
/// before the word existed reads as one without a planned handover, so the layout
/// version stayed 1.
///
/// # What fencing does and does not guarantee
///
/// A worker writes audio and state only while `owner` is its id, and a standby takes
/// over with [`StateSegment::try_take_ownership`] (a compare-and-swap), so at most one
/// taker wins and a primary that checks `owner` each period goes silent within one
/// period. A primary that is stopped *between* its owner check and its publish can
/// still publish once after losing ownership. [`StateSegment::publish_from`] narrows
/// that: publishing with a compare-and-swap from the writer's own last publication
/// fails if anyone has published since (the worker publishes this way, and checks
/// `published` before it writes the slot: only a publish racing that check writes).
/// What remains: if the late primary publishes *before* the new owner's first
/// publish, the new owner's `publish_from` fails and it must re-read `published`
/// and continue from there; and in that window both wrote slot `1 - s`, which is
/// harmless only because both computed the same period from the same state
/// (modules are deterministic). Closing it fully needs a third slot or an owner epoch
/// inside `published`.
///
/// # Example
///
/// ```
/// use modsynth_shm::StateSegment;
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Vco { phase: f64, freq: f32 }
///
/// let name = format!("/doc{}-vco1-state", std::process::id());
/// let seg = StateSegment::create(&name, 3, std::mem::size_of::<Vco>(), 0)?;
/// let (_, s) = seg.published();
/// let next = Vco { phase: 0.5, freq: 220.0 };
/// // SAFETY (doc): slot 1 - s is at least size_of::<Vco>() bytes, 64-aligned, and
/// // this process owns the module, so nobody else writes or reads it now.
/// unsafe { (seg.slot(1 - s as usize) as *mut Vco).write(next) };
/// seg.publish(256, 1 - s);
///
/// let standby = StateSegment::open(&name)?;
/// standby.expect_layout(3, std::mem::size_of::<Vco>(), 0)?;
/// let (frame, slot) = standby.published();
/// // SAFETY (doc): the published slot is never written while it is published.
/// let state = unsafe { (standby.slot(slot as usize) as *const Vco).read() };
/// assert_eq!((frame, state), (256, next));
/// # modsynth_shm::Segment::unlink(&name)?;
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
pub struct StateSegment {
    seg: Segment,
    layout: StateLayout,
}

impl StateSegment {
    /// Creates state segment `name` for a module of catalog type `module_type`: two
    /// zeroed slots of `slot_size` bytes, a zeroed buffer of `large_len` f32s,
    /// `owner` 0 (nobody) and `published` `(0, 0)`.
    ///
    /// ```
    /// # let name = format!("/doc{}-dly1-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 5, 100, 48_000)?;
    /// assert_eq!((seg.owner(), seg.published()), (0, (0, 0)));
    /// assert_eq!((seg.slot_size(), seg.large_len()), (100, 48_000));
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn create(
        name: &str,
        module_type: u32,
        slot_size: usize,
        large_len: usize,
    ) -> Result<StateSegment, ShmError> {
        let layout = StateLayout::new(slot_size, large_len).ok_or_else(|| ShmError::Io {
            what: format!("size state segment {name}"),
            source: std::io::Error::other(format!(
                "slot size {slot_size} and buffer length {large_len} overflow"
            )),
        })?;
        let seg = Segment::create(name, layout.total)?;
        // SAFETY: the fresh mapping is page-aligned, zero-filled and
        // `layout.total >= size_of::<StateHeader>()` bytes; StateHeader is atomics and
        // integers (all zeros valid), only accessed atomically.
        let h = unsafe { &*(seg.as_ptr() as *const StateHeader) };
        h.module_type.store(module_type, Ordering::Relaxed);
        h.slot_size
            .store(layout.slot_size as u64, Ordering::Relaxed);
        h.slot_offset
            .store(size_of::<StateHeader>() as u64, Ordering::Relaxed);
        h.slot_stride
            .store(layout.slot_stride as u64, Ordering::Relaxed);
        h.large_offset
            .store(layout.large_offset as u64, Ordering::Relaxed);
        h.large_len
            .store(layout.large_len as u64, Ordering::Relaxed);
        h.block.init(KIND_STATE, layout.total);
        Ok(StateSegment { seg, layout })
    }

    /// Opens state segment `name`, checking its header and that its slots and buffer
    /// lie inside the segment. Check the module type and sizes with
    /// [`expect_layout`](Self::expect_layout) before casting slots to a state type.
    ///
    /// ```
    /// # use modsynth_shm::{Segment, StateSegment};
    /// let name = format!("/doc{}-w12-state", std::process::id());
    /// Segment::create(&name, 4096)?; // all zeros: no header
    /// let err = StateSegment::open(&name).err().unwrap();
    /// assert!(err.to_string().contains("not initialized"));
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn open(name: &str) -> Result<StateSegment, ShmError> {
        let seg = Segment::open(name)?;
        check_header(&seg, KIND_STATE, size_of::<StateHeader>())?;
        // SAFETY: check_header verified the mapping is at least
        // size_of::<StateHeader>() bytes; page-aligned; atomics only, any bit pattern.
        let h = unsafe { &*(seg.as_ptr() as *const StateHeader) };
        let get = |a: &AtomicU64| usize::try_from(a.load(Ordering::Relaxed)).ok();
        let found = (
            get(&h.slot_size),
            get(&h.slot_offset),
            get(&h.slot_stride),
            get(&h.large_offset),
            get(&h.large_len),
        );
        let (Some(slot_size), Some(slot_offset), Some(stride), Some(large_offset), Some(large_len)) =
            found
        else {
            return Err(ShmError::corrupt(name, "its layout fields overflow"));
        };
        let layout = StateLayout::new(slot_size, large_len);
        if slot_offset != size_of::<StateHeader>()
            || layout.map(|l| (l.slot_stride, l.large_offset, l.total))
                != Some((stride, large_offset, seg.len()))
        {
            return Err(ShmError::corrupt(
                name,
                format!(
                    "its layout is inconsistent (slot size {slot_size}, offset \
                     {slot_offset}, stride {stride}, buffer at {large_offset} with \
                     {large_len} f32s, segment {} bytes)",
                    seg.len()
                ),
            ));
        }
        Ok(StateSegment {
            layout: layout.expect("checked above"),
            seg,
        })
    }

    /// Checks that this segment holds a module of type `module_type` with slots of
    /// `slot_size` bytes and a buffer of `large_len` f32s; the error says what differs.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco2-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 1, 64, 0)?;
    /// assert!(seg.expect_layout(1, 64, 0).is_ok());
    /// assert!(seg.expect_layout(2, 64, 0).is_err());
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn expect_layout(
        &self,
        module_type: u32,
        slot_size: usize,
        large_len: usize,
    ) -> Result<(), ShmError> {
        let found = (self.module_type(), self.slot_size(), self.large_len());
        if found == (module_type, slot_size, large_len) {
            return Ok(());
        }
        Err(ShmError::corrupt(
            self.seg.name(),
            format!(
                "it holds module type {} with {}-byte slots and {} f32s, expected type \
                 {module_type} with {slot_size}-byte slots and {large_len} f32s (another \
                 module, or another modsynth version)",
                found.0, found.1, found.2
            ),
        ))
    }

    fn header(&self) -> &StateHeader {
        // SAFETY: `create` made or `open` checked a page-aligned mapping of at least
        // size_of::<StateHeader>() bytes; StateHeader is valid for any bit pattern and
        // only accessed atomically; the borrow is tied to `self`, which owns the
        // mapping.
        unsafe { &*(self.seg.as_ptr() as *const StateHeader) }
    }

    /// The worker id that may write audio and state (0: nobody), loaded with Acquire.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco3-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert_eq!(seg.owner(), 0);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn owner(&self) -> u64 {
        self.header().owner.load(Ordering::Acquire)
    }

    /// Makes `new_owner` the owner if the owner is still `expected_owner`
    /// (compare-and-swap, AcqRel): the fencing primitive. Of several workers taking
    /// over from the same owner exactly one wins; the loser, and the old owner, see
    /// the new id in [`owner`](Self::owner) and must stay silent.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco4-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert!(seg.try_take_ownership(0, 7)); // first owner
    /// assert!(seg.try_take_ownership(7, 8)); // standby 8 takes over from 7
    /// assert!(!seg.try_take_ownership(7, 9)); // too late: 7 is no longer owner
    /// assert_eq!(seg.owner(), 8);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn try_take_ownership(&self, expected_owner: u64, new_owner: u64) -> bool {
        self.header()
            .owner
            .compare_exchange(
                expected_owner,
                new_owner,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Plans a handover of the module to worker `to` from the first period that
    /// starts at or after JACK frame `at` (a Release store; see [`Handover`]). The
    /// new owner writes it; every worker that plays or watches the module reads it
    /// with [`handover`](Self::handover) at the start of every period.
    ///
    /// ```
    /// use modsynth_shm::Handover;
    /// # let name = format!("/doc{}-vco12-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert_eq!(seg.handover(), None);
    /// let planned = Handover { to: 4712, at: 48_000 };
    /// seg.set_handover(planned);
    /// assert_eq!(seg.handover(), Some(planned));
    /// assert!(planned.is_due(48_000) && planned.is_due(48_256) && !planned.is_due(47_744));
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn set_handover(&self, handover: Handover) {
        self.header()
            .handover
            .store(handover.pack(), Ordering::Release);
    }

    /// The planned handover, if any (one Acquire load: real-time safe).
    pub fn handover(&self) -> Option<Handover> {
        Handover::unpack(self.header().handover.load(Ordering::Acquire))
    }

    /// Removes the planned handover if it is still `planned` (compare-and-swap):
    /// the new owner clears the record it wrote once it owns the module, and never
    /// a newer one someone else wrote since. Returns whether it removed it.
    ///
    /// ```
    /// use modsynth_shm::Handover;
    /// # let name = format!("/doc{}-vco13-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// let first = Handover { to: 7, at: 256 };
    /// seg.set_handover(first);
    /// seg.set_handover(Handover { to: 8, at: 512 }); // planned anew meanwhile
    /// assert!(!seg.clear_handover(first)); // not the one 7 wrote: stays
    /// assert!(seg.clear_handover(Handover { to: 8, at: 512 }));
    /// assert_eq!(seg.handover(), None);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn clear_handover(&self, planned: Handover) -> bool {
        self.header()
            .handover
            .compare_exchange(planned.pack(), 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Publishes `slot` (0 or 1) as the state after the period that ended at
    /// `frame_time`, with a Release store: whoever then loads it with
    /// [`published`](Self::published) sees everything written to the slot before.
    ///
    /// # Panics
    ///
    /// If `slot` is not 0 or 1.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco5-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// seg.publish(u32::MAX, 1);
    /// assert_eq!(seg.published(), (u32::MAX, 1));
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn publish(&self, frame_time: u32, slot: u32) {
        assert!(slot < 2, "state slot {slot} does not exist (0 or 1)");
        self.header()
            .published
            .store(pack(frame_time, slot), Ordering::Release);
    }

    /// Publishes `new` only if `(frame_time, slot)` is still `expected`
    /// (compare-and-swap, AcqRel); returns whether it did. A primary that publishes
    /// this way cannot overwrite what a standby published after taking over.
    ///
    /// # Panics
    ///
    /// If the new slot is not 0 or 1.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco6-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert!(seg.publish_from((0, 0), (256, 1)));
    /// assert!(!seg.publish_from((0, 0), (512, 0))); // someone published meanwhile
    /// assert_eq!(seg.published(), (256, 1));
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn publish_from(&self, expected: (u32, u32), new: (u32, u32)) -> bool {
        assert!(new.1 < 2, "state slot {} does not exist (0 or 1)", new.1);
        self.header()
            .published
            .compare_exchange(
                pack(expected.0, expected.1),
                pack(new.0, new.1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The last published `(frame_time, slot)`, loaded with Acquire. The slot is
    /// always 0 or 1 (a corrupt value reads as its lowest bit).
    ///
    /// ```
    /// # let name = format!("/doc{}-vco7-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert_eq!(seg.published(), (0, 0));
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn published(&self) -> (u32, u32) {
        let v = self.header().published.load(Ordering::Acquire);
        ((v >> 32) as u32, (v as u32) & 1)
    }

    /// Records that owner `owner` began the period starting at `frame_time` (a
    /// Release store, on the line the owner publishes to anyway). With
    /// [`published`](Self::published) it tells a reader whether the owner is inside
    /// a period it never finished ([`unfinished_period`](Self::unfinished_period)):
    /// hung in its callback, not merely waiting for the server to call it.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco9-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert!(seg.try_take_ownership(0, 7));
    /// seg.enter(256, 7);
    /// assert_eq!(seg.unfinished_period(), Some(256));
    /// seg.publish(512, 1); // the period 256..512 ended
    /// assert_eq!(seg.unfinished_period(), None);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn enter(&self, frame_time: u32, owner: u64) {
        self.header()
            .entered
            .store(pack(frame_time, owner as u32), Ordering::Release);
    }

    /// The first frame of a period the current owner began ([`enter`](Self::enter))
    /// and has not published the end of: `None` when it finished every period it
    /// began, or the last one begun was another owner's (it died in it, and its
    /// successor has not begun one yet).
    ///
    /// ```
    /// # let name = format!("/doc{}-vco10-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert!(seg.try_take_ownership(0, 7));
    /// seg.enter(256, 7);
    /// assert!(seg.try_take_ownership(7, 8)); // 7 died inside its period
    /// assert_eq!(seg.unfinished_period(), None); // 8 is not inside one
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn unfinished_period(&self) -> Option<u32> {
        let entered = self.header().entered.load(Ordering::Acquire);
        let (frame, owner) = ((entered >> 32) as u32, entered as u32);
        if entered == 0 || owner != self.owner() as u32 {
            return None;
        }
        let (published, _) = self.published();
        // Ended at or before the period's start (wrapping): that period is unfinished.
        (published.wrapping_sub(frame) as i32 <= 0).then_some(frame)
    }

    /// The first byte of state slot `i` (64-aligned, [`slot_size`](Self::slot_size)
    /// bytes). See the type's aliasing rule before reading or writing through it.
    ///
    /// # Panics
    ///
    /// If `i` is not 0 or 1.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco8-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 10, 0)?;
    /// assert_eq!(seg.slot(1) as usize - seg.slot(0) as usize, 64);
    /// assert_eq!(seg.slot(0) as usize % 64, 0);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn slot(&self, i: usize) -> *mut u8 {
        assert!(i < 2, "state slot {i} does not exist (0 or 1)");
        let offset = size_of::<StateHeader>() + i * self.layout.slot_stride;
        // SAFETY: the layout was built by `create` or checked against the mapping's
        // length by `open`, so both slots lie inside the mapping; `add` stays in
        // bounds of that one allocation.
        unsafe { self.seg.as_ptr().add(offset) }
    }

    /// The first f32 of the large buffer (64-aligned, [`large_len`](Self::large_len)
    /// f32s). Same aliasing rule as the slots: only the owner writes it.
    ///
    /// ```
    /// # let name = format!("/doc{}-dly2-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 4)?;
    /// // SAFETY (doc): the buffer holds 4 f32s and this process is its only user.
    /// unsafe { seg.large().add(3).write(0.5) };
    /// assert_eq!(unsafe { seg.large().add(3).read() }, 0.5);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn large(&self) -> *mut f32 {
        // SAFETY: as in `slot`: `large_offset` (a multiple of 64) plus
        // `large_len * 4` bytes is exactly the mapping's length, checked or built.
        unsafe { self.seg.as_ptr().add(self.layout.large_offset) as *mut f32 }
    }

    /// Number of f32s in the large buffer.
    ///
    /// ```
    /// # let name = format!("/doc{}-dly3-state", std::process::id());
    /// assert_eq!(modsynth_shm::StateSegment::create(&name, 0, 8, 9)?.large_len(), 9);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn large_len(&self) -> usize {
        self.layout.large_len
    }

    /// Bytes in one state slot, as given to [`create`](Self::create).
    ///
    /// ```
    /// # let name = format!("/doc{}-vco9-state", std::process::id());
    /// assert_eq!(modsynth_shm::StateSegment::create(&name, 0, 70, 0)?.slot_size(), 70);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn slot_size(&self) -> usize {
        self.layout.slot_size
    }

    /// The module type index given to [`create`](Self::create).
    ///
    /// ```
    /// # let name = format!("/doc{}-vco10-state", std::process::id());
    /// assert_eq!(modsynth_shm::StateSegment::create(&name, 4, 8, 0)?.module_type(), 4);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn module_type(&self) -> u32 {
        self.header().module_type.load(Ordering::Relaxed)
    }

    /// The underlying segment.
    ///
    /// ```
    /// # let name = format!("/doc{}-vco11-state", std::process::id());
    /// let seg = modsynth_shm::StateSegment::create(&name, 0, 8, 0)?;
    /// assert_eq!(seg.segment().len(), 256 + 2 * 64);
    /// # modsynth_shm::Segment::unlink(&name)?;
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

/// A planned handover of a module from the worker that plays it to worker `to`
/// (its id in the `owner` word: a pid), on the first period that starts at or after
/// JACK frame `at`. Stored in the segment as one word, `to << 32 | at`; 0 means no
/// handover (no worker has id 0).
///
/// How the workers use it (`modsynth_worker::engine`): at the start of every
/// period, the owner that finds a handover to someone else due gives the module
/// away with the fencing compare-and-swap of `owner` before it plays; `to` takes it
/// with the same compare-and-swap from the owner it recorded, unless that owner has
/// already played this period. Whichever of the two runs first in the period does
/// the swap, the other sees the owner word: the old owner plays every period before
/// the handover's and none from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// The worker that plays the module from the handover on.
    pub to: u32,
    /// The JACK frame from which it plays (the first period that starts at or after it).
    pub at: u32,
}

impl Handover {
    /// Whether the period starting at `frame_time` is at or after `at` (a wrapping
    /// compare: JACK's frame clock wraps after ~24 h at 48 kHz).
    ///
    /// ```
    /// let h = modsynth_shm::Handover { to: 1, at: u32::MAX - 10 };
    /// assert!(h.is_due(5)); // across the wrap
    /// assert!(!h.is_due(u32::MAX - 11));
    /// ```
    pub fn is_due(&self, frame_time: u32) -> bool {
        frame_time.wrapping_sub(self.at) as i32 >= 0
    }

    fn pack(&self) -> u64 {
        (u64::from(self.to) << 32) | u64::from(self.at)
    }

    fn unpack(word: u64) -> Option<Handover> {
        (word != 0).then_some(Handover {
            to: (word >> 32) as u32,
            at: word as u32,
        })
    }
}

fn pack(frame_time: u32, slot: u32) -> u64 {
    (u64::from(frame_time) << 32) | u64::from(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Names;
    use std::sync::{Arc, Barrier};

    #[test]
    fn state_segment_two_mappings_see_each_other() {
        let names = Names::new();
        let name = names.with("vco1", "state");
        let a = StateSegment::create(&name, 9, 100, 1000).unwrap();
        let b = StateSegment::open(&name).unwrap();
        b.expect_layout(9, 100, 1000).unwrap();
        assert_eq!(a.segment().len(), 256 + 2 * 128 + 4000);
        assert_eq!(b.slot(0) as usize % 64, 0);
        assert_eq!(b.large() as usize % 64, 0);
        // SAFETY: slot 1 is 100 bytes and the buffer 1000 f32s; this test is the
        // only user of the segment and the two mappings are used one after the other.
        unsafe {
            a.slot(1).add(99).write(0xAB);
            a.large().add(999).write(-1.5);
        }
        a.publish(4096, 1);
        let (frame, slot) = b.published();
        assert_eq!((frame, slot), (4096, 1));
        // SAFETY: as above.
        unsafe {
            assert_eq!(b.slot(slot as usize).add(99).read(), 0xAB);
            assert_eq!(b.large().add(999).read(), -1.5);
        }
        assert!(b.try_take_ownership(0, 5));
        assert_eq!(a.owner(), 5);
    }

    #[test]
    fn cas_fencing_only_one_taker_wins() {
        let names = Names::new();
        let name = names.with("vco2", "state");
        let seg = StateSegment::create(&name, 0, 8, 0).unwrap();
        for round in 0..200u64 {
            let old = round * 10 + 1;
            assert!(seg.try_take_ownership(seg.owner(), old));
            let barrier = Arc::new(Barrier::new(2));
            let takers: Vec<_> = (0..2u64)
                .map(|t| {
                    let name = name.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        // Its own mapping, as a second process would have.
                        let mine = StateSegment::open(&name).unwrap();
                        barrier.wait();
                        mine.try_take_ownership(old, old + 1 + t)
                    })
                })
                .collect();
            let wins: Vec<bool> = takers.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(wins.iter().filter(|w| **w).count(), 1, "round {round}");
            let winner = old + 1 + wins.iter().position(|w| *w).unwrap() as u64;
            assert_eq!(seg.owner(), winner);
        }
    }

    #[test]
    fn corrupt_magic_is_an_error() {
        let names = Names::new();
        let name = names.with("vco3", "state");
        let seg = StateSegment::create(&name, 0, 8, 0).unwrap();
        // SAFETY: the mapping is at least 8 bytes; the magic is an AtomicU64 at
        // offset 0 of a page-aligned mapping, written here atomically.
        unsafe { (*(seg.segment().as_ptr() as *const AtomicU64)).store(7, Ordering::SeqCst) };
        let err = StateSegment::open(&name).err().unwrap();
        assert!(err.to_string().contains("not a modsynth block"), "{err}");
        // SAFETY: as above.
        unsafe { (*(seg.segment().as_ptr() as *const AtomicU64)).store(0, Ordering::SeqCst) };
        let err = StateSegment::open(&name).err().unwrap();
        assert!(err.to_string().contains("not initialized"), "{err}");
    }

    #[test]
    fn wrong_version_kind_size_or_layout_is_an_error() {
        let names = Names::new();
        // Too small to hold a header at all: refused before reading anything.
        let tiny = names.next("tiny");
        Segment::create(&tiny, 10).unwrap();
        let err = StateSegment::open(&tiny).err().unwrap();
        assert!(err.to_string().contains("too small"), "{err}");

        let name = names.with("vco4", "state");
        let seg = StateSegment::create(&name, 0, 8, 16).unwrap();
        let h = seg.header();
        h.block.version.store(99, Ordering::SeqCst);
        assert!(StateSegment::open(&name)
            .err()
            .unwrap()
            .to_string()
            .contains("layout version 99"));
        h.block.version.store(LAYOUT_VERSION, Ordering::SeqCst);
        h.block.kind.store(1, Ordering::SeqCst);
        let err = StateSegment::open(&name).err().unwrap();
        assert!(err.to_string().contains("unknown kind 1"), "{err}");
        h.block.kind.store(KIND_STATE, Ordering::SeqCst);
        // A buffer length that would reach past the end of the segment.
        h.large_len.store(1 << 40, Ordering::SeqCst);
        let err = StateSegment::open(&name).err().unwrap();
        assert!(err.to_string().contains("inconsistent"), "{err}");
        h.large_len.store(16, Ordering::SeqCst);
        h.block.total_len.store(1, Ordering::SeqCst);
        let err = StateSegment::open(&name).err().unwrap();
        assert!(err.to_string().contains("header says 1 bytes"), "{err}");
        h.block
            .total_len
            .store(seg.segment().len() as u64, Ordering::SeqCst);
        let ok = StateSegment::open(&name).unwrap();
        assert!(ok.expect_layout(0, 8, 16).is_ok());
        assert!(ok.expect_layout(0, 9, 16).is_err());
    }

    #[test]
    fn publish_from_fences_a_late_primary() {
        let names = Names::new();
        let name = names.with("vco5", "state");
        let primary = StateSegment::create(&name, 0, 8, 0).unwrap();
        let standby = StateSegment::open(&name).unwrap();
        assert!(primary.try_take_ownership(0, 1));
        assert!(primary.publish_from((0, 0), (256, 1)));
        // Primary reads (256, 1), stalls; standby takes over and publishes.
        let seen = primary.published();
        assert!(standby.try_take_ownership(1, 2));
        assert!(standby.publish_from(seen, (512, 0)));
        // The stalled primary wakes up: its publish is refused.
        assert!(!primary.publish_from(seen, (512, 0)));
        assert_eq!(standby.published(), (512, 0));
    }

    #[test]
    #[should_panic(expected = "state slot 2 does not exist")]
    fn slot_out_of_range_panics() {
        let names = Names::new();
        let seg = StateSegment::create(&names.with("vco6", "state"), 0, 8, 0).unwrap();
        seg.slot(2);
    }
}
