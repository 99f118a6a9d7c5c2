//! The hardware boundary. Everything here builds only for the bare-metal
//! target; the mm logic above it talks to it through small interfaces.

pub mod aarch64;
