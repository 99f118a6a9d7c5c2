//! The hardware boundary. Everything here builds only for the bare-metal
//! target; the mm logic above it talks to it through small interfaces.
//!
//! The facade: the architecture is chosen here, once, and its modules are
//! re-exported under `crate::arch`. Code outside `arch/` names
//! `crate::arch::cpu`, `crate::arch::tlbi`, ..., never the architecture's
//! own module, which is private.

mod aarch64;

pub use aarch64::{boot, cache, context, cpu, early, exception, kmap, layout, page, recover, tlbi, trap, uaccess};
