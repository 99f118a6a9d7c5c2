//! Boot: CPUs, features, exception levels, command line.

use core::sync::atomic::Ordering;

use crate::arch::cpu::{self, CpuFeatures};
use crate::arch::early::BOOT_INFO;
use crate::{ktest, percpu, BOARD, FEATURES};

fn entry_el() -> u64 {
    // SAFETY: read-only after boot.
    unsafe { (*(&raw const BOOT_INFO)).entry_el }
}

ktest!(
    fn all_listed_cpus_online() {
        let board = BOARD.get().unwrap();
        assert_eq!(board.ncpus, 4, "the default suite boots -smp 4");
        assert_eq!(percpu::online_count(), board.ncpus, "CPUs online vs listed in the device tree");
    }
);

ktest!(
    #[config(cpus = 2)]
    fn two_cpus_online() {
        assert_eq!(BOARD.get().unwrap().ncpus, 2);
        assert_eq!(percpu::online_count(), 2);
    }
);

ktest!(
    #[config(cpus = 1)]
    fn uniprocessor_boots() {
        assert_eq!(percpu::online_count(), 1);
        assert_eq!(cpu::cpu_id(), 0);
    }
);

ktest!(
    fn cpu_ids_and_mpidrs_distinct() {
        let n = percpu::online_count();
        for a in 0..n {
            for b in a + 1..n {
                let (ma, mb) =
                    (percpu::get(a).mpidr.load(Ordering::Relaxed), percpu::get(b).mpidr.load(Ordering::Relaxed));
                assert_ne!(ma, mb, "CPUs {a} and {b} share MPIDR {ma:#x}");
            }
        }
    }
);

ktest!(
    fn features_on_cpu_max() {
        let f = FEATURES.get().unwrap();
        assert_eq!(*f, CpuFeatures::detect(), "features recorded at boot match the ID registers");
        assert!(f.tlbi_range, "-cpu max implements FEAT_TLBIRANGE");
        assert!(f.ttl, "-cpu max implements FEAT_TTL");
        assert_eq!(f.asid_bits, 16);
        // TCR_EL1.AS must be set where 16-bit ASIDs exist.
        assert_ne!(cpu::tcr() & (1 << 36), 0, "TCR_EL1.AS");
    }
);

ktest!(
    #[config(cpu = "cortex-a72")]
    fn features_on_cortex_a72() {
        let f = FEATURES.get().unwrap();
        assert!(!f.tlbi_range, "cortex-a72 has no TLBI range ops");
        assert!(!f.ttl);
        assert_eq!(f.cpu_name(), "cortex-a72");
    }
);

ktest!(
    fn entered_at_el1() {
        assert_eq!(entry_el(), 1);
        assert_eq!(cpu::current_el(), 1);
    }
);

ktest!(
    #[config(el2 = true)]
    fn entered_at_el2_runs_at_el1() {
        assert_eq!(entry_el(), 2, "QEMU virtualization=on enters at EL2");
        assert_eq!(cpu::current_el(), 1, "the kernel drops to EL1");
        assert_eq!(percpu::online_count(), 4, "secondaries come up through PSCI over SMC");
    }
);

ktest!(
    #[config(append = "log=warn tick_hz=250")]
    fn command_line_reaches_kernel() {
        let o = crate::init::options();
        assert_eq!(o.tick_hz, 250);
        assert_eq!(o.log, log::LevelFilter::Warn);
        assert!(BOARD.get().unwrap().bootargs().contains("tick_hz=250"));
    }
);
