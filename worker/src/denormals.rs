//! Flush-to-zero for the audio threads.
//!
//! A resonant filter or a feedback delay whose input stops decays towards zero
//! forever; below 1.2e-38 its state turns subnormal, and on x86 every operation on a
//! subnormal float takes a microcode assist of around a hundred cycles, so a module
//! that falls silent would get slower, not faster. With flush-to-zero (results that
//! would be subnormal become 0) and denormals-are-zero (subnormal inputs read as 0)
//! the tail just reaches 0. [`FlushToZero`] sets both for the current thread and puts
//! the previous mode back when dropped; the engine holds one for every period it
//! processes, so every thread that runs DSP through it (the JACK process thread, the
//! offline tests, the bench) runs the same arithmetic, and a standby computes the
//! same bits as the primary it takes over from.
//!
//! ```
//! use modsynth_worker::denormals::FlushToZero;
//!
//! let tiny = std::hint::black_box(1.0e-30f32);
//! {
//!     let _ftz = FlushToZero::new();
//!     let product = std::hint::black_box(tiny) * std::hint::black_box(1.0e-10f32);
//!     if FlushToZero::SUPPORTED {
//!         assert_eq!(product, 0.0); // would be 1e-40, a subnormal
//!     }
//! }
//! assert!((tiny * std::hint::black_box(1.0e-10f32)).is_subnormal()); // mode restored
//! ```

/// Sets flush-to-zero and denormals-are-zero on the current thread while it lives.
pub struct FlushToZero {
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    previous: u64,
}

#[cfg(target_arch = "x86_64")]
mod arch {
    /// MXCSR bits: FTZ (flush to zero) and DAZ (denormals are zero).
    const FTZ_DAZ: u32 = 0x8000 | 0x0040;

    pub fn enable() -> u64 {
        let mut old: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR of this thread to `old`, a valid,
        // writable, aligned u32 on our stack; ldmxcsr loads it back with the FTZ and
        // DAZ bits set. Only the current thread's floating-point mode changes (the
        // kernel saves it per thread), no memory but `old` is touched, and no Rust
        // code relies on subnormal results for soundness: they only change values.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut old, options(nostack, preserves_flags));
            let new = old | FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &new, options(nostack, readonly, preserves_flags));
        }
        old as u64
    }

    pub fn restore(previous: u64) {
        let old = previous as u32;
        // SAFETY: loads a value this thread's MXCSR held before (from `enable`), so
        // the mode is exactly what it was; `old` is a valid aligned u32.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &old, options(nostack, readonly, preserves_flags));
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// FPCR bit 24: FZ, flush subnormal inputs and results to zero (AArch64 has one
    /// bit for both).
    const FZ: u64 = 1 << 24;

    pub fn enable() -> u64 {
        let old: u64;
        // SAFETY: reads and writes this thread's FPCR only (saved per thread by the
        // kernel); setting FZ changes how subnormal values round, never memory or
        // control flow that Rust relies on for soundness.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) old, options(nomem, nostack, preserves_flags));
            std::arch::asm!("msr fpcr, {}", in(reg) old | FZ, options(nomem, nostack, preserves_flags));
        }
        old
    }

    pub fn restore(previous: u64) {
        // SAFETY: writes back the FPCR value this thread had before `enable`.
        unsafe {
            std::arch::asm!("msr fpcr, {}", in(reg) previous, options(nomem, nostack, preserves_flags));
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod arch {
    pub fn enable() -> u64 {
        0
    }
    pub fn restore(_: u64) {}
}

impl FlushToZero {
    /// Whether this architecture's flush-to-zero is set (x86_64 and aarch64).
    pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

    /// Sets flush-to-zero (and denormals-are-zero on x86) for the current thread.
    #[inline]
    #[allow(clippy::new_without_default)]
    pub fn new() -> FlushToZero {
        FlushToZero {
            previous: arch::enable(),
        }
    }
}

impl Drop for FlushToZero {
    #[inline]
    fn drop(&mut self) {
        arch::restore(self.previous);
    }
}
