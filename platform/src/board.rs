//! What the device tree tells us about the machine.

use core::fmt;

/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = abi::MAX_CPUS;
const MAX_REGIONS: usize = 8;
pub const BOOTARGS_MAX: usize = 2048;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
}

impl MemRegion {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// How PSCI calls reach the firmware/hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardError {
    BadDeviceTree,
    NoMemory,
    NoCpus,
    NoUart,
    NoGicV3,
    NoPsci,
    BootargsTooLong,
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BoardError::BadDeviceTree => "the device tree is not valid",
            BoardError::NoMemory => "the device tree lists no memory",
            BoardError::NoCpus => "the device tree lists no CPUs",
            BoardError::NoUart => "the device tree lists no PL011 UART",
            BoardError::NoGicV3 => "the device tree lists no GICv3 (boot with -M virt,gic-version=3)",
            BoardError::NoPsci => "the device tree has no usable /psci node",
            BoardError::BootargsTooLong => "the kernel command line is longer than 2048 bytes",
        })
    }
}

/// Everything the kernel takes from the device tree.
#[derive(Clone, Debug)]
pub struct BoardInfo {
    pub memory: [MemRegion; MAX_REGIONS],
    pub nmemory: usize,
    /// MPIDR affinity values of the CPUs, in device-tree order.
    pub cpus: [u64; MAX_CPUS],
    pub ncpus: usize,
    /// CPUs listed beyond MAX_CPUS (not brought up).
    pub cpus_ignored: usize,
    pub uart: MemRegion,
    pub gicd: MemRegion,
    pub gicr: MemRegion,
    pub psci: Conduit,
    bootargs: [u8; BOOTARGS_MAX],
    bootargs_len: usize,
}

impl BoardInfo {
    pub fn memory(&self) -> &[MemRegion] {
        &self.memory[..self.nmemory]
    }
    pub fn cpus(&self) -> &[u64] {
        &self.cpus[..self.ncpus]
    }
    pub fn bootargs(&self) -> &str {
        core::str::from_utf8(&self.bootargs[..self.bootargs_len]).unwrap_or("")
    }
    pub fn total_memory(&self) -> u64 {
        self.memory().iter().map(|r| r.size).sum()
    }

    /// Parses a flattened device tree.
    pub fn from_fdt(blob: &[u8]) -> Result<BoardInfo, BoardError> {
        let fdt = fdt::Fdt::new(blob).map_err(|_| BoardError::BadDeviceTree)?;
        let mut info = BoardInfo {
            memory: [MemRegion::default(); MAX_REGIONS],
            nmemory: 0,
            cpus: [0; MAX_CPUS],
            ncpus: 0,
            cpus_ignored: 0,
            uart: MemRegion::default(),
            gicd: MemRegion::default(),
            gicr: MemRegion::default(),
            psci: Conduit::Hvc,
            bootargs: [0; BOOTARGS_MAX],
            bootargs_len: 0,
        };
        for r in fdt.memory().regions() {
            if let (Some(size), true) = (r.size, info.nmemory < MAX_REGIONS) {
                if size > 0 {
                    info.memory[info.nmemory] = MemRegion { base: r.starting_address as u64, size: size as u64 };
                    info.nmemory += 1;
                }
            }
        }
        if info.nmemory == 0 {
            return Err(BoardError::NoMemory);
        }
        for cpu in fdt.cpus() {
            if info.ncpus < MAX_CPUS {
                info.cpus[info.ncpus] = cpu.ids().first() as u64;
                info.ncpus += 1;
            } else {
                info.cpus_ignored += 1;
            }
        }
        if info.ncpus == 0 {
            return Err(BoardError::NoCpus);
        }
        let first_reg = |node: fdt::node::FdtNode, i: usize| -> Option<MemRegion> {
            let r = node.reg()?.nth(i)?;
            Some(MemRegion { base: r.starting_address as u64, size: r.size.unwrap_or(0) as u64 })
        };
        let uart = fdt
            .chosen()
            .stdout()
            .filter(|n| n.compatible().is_some_and(|c| c.all().any(|s| s == "arm,pl011")))
            .or_else(|| fdt.find_compatible(&["arm,pl011"]))
            .ok_or(BoardError::NoUart)?;
        info.uart = first_reg(uart, 0).ok_or(BoardError::NoUart)?;
        let gic = fdt.find_compatible(&["arm,gic-v3"]).ok_or(BoardError::NoGicV3)?;
        info.gicd = first_reg(gic, 0).ok_or(BoardError::NoGicV3)?;
        info.gicr = first_reg(gic, 1).ok_or(BoardError::NoGicV3)?;
        let psci = fdt.find_node("/psci").ok_or(BoardError::NoPsci)?;
        info.psci = match psci.property("method").and_then(|p| p.as_str()) {
            Some("hvc") => Conduit::Hvc,
            Some("smc") => Conduit::Smc,
            _ => return Err(BoardError::NoPsci),
        };
        let args = fdt.chosen().bootargs().unwrap_or("").as_bytes();
        if args.len() > BOOTARGS_MAX {
            return Err(BoardError::BootargsTooLong);
        }
        info.bootargs[..args.len()].copy_from_slice(args);
        info.bootargs_len = args.len();
        Ok(info)
    }
}
