//! AArch64 at EL1: boot, exceptions, system registers and TLB maintenance.

pub mod boot;
pub mod cache;
pub mod context;
pub mod cpu;
pub mod early;
pub mod exception;
pub mod kmap;
pub mod layout;
pub mod page;
pub mod recover;
pub mod tlbi;
pub mod trap;
pub mod uaccess;
