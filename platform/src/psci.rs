//! PSCI calls through the `smccc` crate, over HVC or SMC as the device tree says.

use crate::Conduit;
use smccc::{psci, Hvc, Smc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciError(pub psci::error::Error);

impl core::fmt::Display for PsciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PSCI error {:?}", self.0)
    }
}

/// Starts the CPU with affinity `mpidr` at physical address `entry`, with
/// `context` in x0.
pub fn cpu_on(conduit: Conduit, mpidr: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    match conduit {
        Conduit::Hvc => psci::cpu_on::<Hvc>(mpidr, entry, context),
        Conduit::Smc => psci::cpu_on::<Smc>(mpidr, entry, context),
    }
    .map_err(PsciError)
}
