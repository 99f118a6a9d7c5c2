//! The user-space system-call library and runtime of the built-in programs.
//!
//! - [`raw`]: `syscall0..6` and `syscall_ret5` (`SVC #0`, ABI in `abi`);
//! - [`sys`]: one typed wrapper per system call, returning [`Errno`] errors;
//! - [`print!`]/[`println!`]: one WRITE per call;
//! - [`mm::Mapping`] and [`thread`]: safe memory and threads;
//! - [`rt`]: `_start`, the panic handler (exit status 101) and [`entry!`];
//! - [`time`]: the virtual counter.
//!
//! Every program is linked with `user/programs/user.ld`, which provides the
//! `.text.start` placement and the `__image_start`/`__image_end` symbols.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod errno;
pub mod io;
pub mod mm;
pub mod probe;
pub mod raw;
pub mod rt;
pub mod sys;
pub mod thread;
pub mod time;

pub use abi;
pub use errno::Errno;
pub use sys::*;
