//! The system-call ABI shared by the kernel and user programs.
//!
//! `SVC #0` with the call number in x8 and arguments in x0–x5. The result
//! comes back in x0: non-negative on success, `-errno` on failure. Calls
//! that return several words (IPC) put them in x1–x4.
#![no_std]
#![forbid(unsafe_code)]

/// System-call numbers.
pub mod nr {
    pub const EXIT: u64 = 0;
    /// write(ptr, len) → bytes written, to the console.
    pub const WRITE: u64 = 1;
    /// mmap(addr, len, prot, flags) → address. Anonymous private memory.
    pub const MMAP: u64 = 2;
    pub const MUNMAP: u64 = 3;
    pub const MPROTECT: u64 = 4;
    /// madvise(addr, len, advice).
    pub const MADVISE: u64 = 5;
    /// spawn(name_ptr, name_len, arg) → pid: start a built-in program.
    pub const SPAWN: u64 = 6;
    /// fork() → child pid in the parent, 0 in the child.
    pub const FORK: u64 = 7;
    /// wait(pid or -1, status_ptr or 0) → pid of the child that ended.
    /// ECHILD when no child matches, also when another thread's wait took
    /// the last one meanwhile.
    pub const WAIT: u64 = 8;
    /// thread_create(entry, stack_top, arg) → tid. The thread starts at
    /// `entry(arg)` on `stack_top`.
    pub const THREAD_CREATE: u64 = 9;
    pub const THREAD_EXIT: u64 = 10;
    /// join(tid) → the thread's 32-bit exit code, zero-extended (so never
    /// negative; a negative result is `-errno`). ESRCH for a thread that is
    /// not in this process or was joined already (when two threads join
    /// one, one gets the code and the other ESRCH), EDEADLK for the caller
    /// itself.
    pub const JOIN: u64 = 11;
    pub const YIELD: u64 = 12;
    /// sleep(nanoseconds).
    pub const SLEEP: u64 = 13;
    /// set_affinity(cpu or -1 for any).
    pub const SET_AFFINITY: u64 = 14;
    pub const GETCPU: u64 = 15;
    /// stats(which, buf_ptr, buf_len) → words written (see [`stats`]).
    pub const STATS: u64 = 16;
    /// ep_create() → endpoint id.
    pub const EP_CREATE: u64 = 17;
    /// ep_call(ep, m0, m1, m2, m3) → status in x0, reply words in x1–x4.
    pub const EP_CALL: u64 = 18;
    /// ep_recv(ep) → reply token in x0, message words in x1–x4.
    pub const EP_RECV: u64 = 19;
    /// ep_reply(token, m0, m1, m2, m3).
    pub const EP_REPLY: u64 = 20;
    /// futex_wait(addr, expected, timeout_ns or 0 for none).
    pub const FUTEX_WAIT: u64 = 21;
    /// futex_wake(addr, count) → threads woken.
    pub const FUTEX_WAKE: u64 = 22;
    pub const GETPID: u64 = 23;
    /// kill(pid): ends the process `pid` (its memory is reclaimed at once):
    /// this process or one descended from it; EPERM for any other, ESRCH
    /// for one that does not exist or has ended.
    pub const KILL: u64 = 24;
    /// time_ns() → nanoseconds since boot.
    pub const TIME_NS: u64 = 25;
    /// fault_resume(pc or 0): instead of killing the process, a user data
    /// or instruction abort (unmapped or protection) resumes at `pc` with
    /// x0 = the faulting address. For tests that must survive a fault.
    pub const FAULT_RESUME: u64 = 26;
    /// copy_async(dst, src, len, cpu or -1) → ticket: a kernel worker on
    /// `cpu` (-1: any CPU) copies `len` bytes of this process's memory from
    /// `src` to `dst` while the caller runs on; [`COPY_WAIT`] returns the
    /// outcome. EINVAL for a CPU not online, a length above
    /// [`super::limits::MAX_COPY_LEN`] or overlapping ranges; EFAULT for a
    /// range beyond user space; EAGAIN past [`super::limits::MAX_JOBS`] or
    /// [`super::limits::MAX_JOBS_TOTAL`]. Unmapped or read-only memory is
    /// found by the worker: the job ends there with EFAULT.
    pub const COPY_ASYNC: u64 = 27;
    /// watch_async(log, src, log_len, cpu or -1, ns) → ticket: a kernel
    /// worker on `cpu` reads the u64 at `src` over and over for `ns`
    /// nanoseconds (at most [`super::limits::MAX_WATCH_NS`]) and keeps a log
    /// of `log_len` bytes at `log` (see [`super::copy`]). Both addresses
    /// 8-byte aligned, `log_len` a multiple of 8 of at least
    /// [`super::copy::LOG_MIN`] (EINVAL); the other errors as for
    /// [`COPY_ASYNC`]. A fault on either ends the job with EFAULT.
    pub const WATCH_ASYNC: u64 = 28;
    /// copy_wait(ticket, flags) → the job's result: the bytes copied, or the
    /// samples a watch took; `-errno` if it failed (EFAULT: the worker
    /// faulted on the memory). The ticket is used up (another wait: ESRCH,
    /// also for a ticket of another process). EINTR if this process is
    /// killed meanwhile; with [`super::copy::NOWAIT`], EAGAIN while the job
    /// runs (the ticket stays valid).
    pub const COPY_WAIT: u64 = 29;
    /// dev_bind(dev): device `dev` (< [`super::device::COUNT`]), a secondary
    /// MMU with a translation cache of its own, works on this process's
    /// address space from now on: its jobs ([`DEV_SUBMIT`]) reach the memory
    /// only through that cache, which the kernel keeps coherent (mmu
    /// notifiers). EINVAL for no such device, EBUSY if it is bound already
    /// (to this or another process), EAGAIN if no more ASIDs may be pinned.
    /// The binding ends with [`DEV_UNBIND`] or when the process ends.
    pub const DEV_BIND: u64 = 30;
    /// dev_unbind(dev): ends this process's binding of `dev`; its jobs end
    /// and are forgotten (a later [`DEV_WAIT`] for one: ESRCH). EINVAL for
    /// no such device or one this process has not bound.
    pub const DEV_UNBIND: u64 = 31;
    /// dev_submit(dev, job_ptr) → job id: queues the job of
    /// [`super::device::JOB_WORDS`] words at `job_ptr` (layout and kinds in
    /// [`super::device`]) on `dev`, bound by this process (EINVAL
    /// otherwise). EFAULT for an unreadable job or a range beyond user
    /// space, EINVAL for a bad kind, a length above
    /// [`super::limits::MAX_COPY_LEN`] (or a watch's above
    /// [`super::limits::MAX_WATCH_NS`]), overlapping copy ranges or a
    /// misaligned watch, EAGAIN with
    /// [`super::device::MAX_QUEUE`] jobs of the binding not yet waited for.
    /// Unmapped or read-only memory is found by the device: the job ends
    /// with EFAULT.
    pub const DEV_SUBMIT: u64 = 32;
    /// dev_wait(dev, id, report_ptr or 0, flags) → the job's result (bytes
    /// copied or filled, the checksum, or the reads a watch made), or
    /// `-errno` (EFAULT: the device met memory it may not access). With a
    /// `report_ptr`, the job's [`super::device::REPORT_WORDS`]-word report
    /// is written there. The id is used up; ESRCH for an unknown one.
    /// Flags: [`super::device::NOWAIT`] (EAGAIN while the job runs),
    /// [`super::device::STOP`] (a watch ends at its next read). EINTR if
    /// this process is killed meanwhile.
    pub const DEV_WAIT: u64 = 33;
    pub const COUNT: u64 = 34;

    /// Each call's name, indexed by its number.
    pub const NAMES: [&str; COUNT as usize] = [
        "exit",
        "write",
        "mmap",
        "munmap",
        "mprotect",
        "madvise",
        "spawn",
        "fork",
        "wait",
        "thread_create",
        "thread_exit",
        "join",
        "yield",
        "sleep",
        "set_affinity",
        "getcpu",
        "stats",
        "ep_create",
        "ep_call",
        "ep_recv",
        "ep_reply",
        "futex_wait",
        "futex_wake",
        "getpid",
        "kill",
        "time_ns",
        "fault_resume",
        "copy_async",
        "watch_async",
        "copy_wait",
        "dev_bind",
        "dev_unbind",
        "dev_submit",
        "dev_wait",
    ];
}

/// Error numbers (returned negated).
pub mod errno {
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const ESRCH: i64 = 3;
    pub const EINTR: i64 = 4;
    pub const ECHILD: i64 = 10;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EFAULT: i64 = 14;
    pub const EBUSY: i64 = 16;
    pub const EEXIST: i64 = 17;
    pub const EINVAL: i64 = 22;
    pub const EPIPE: i64 = 32;
    pub const EDEADLK: i64 = 35;
    pub const ENOSYS: i64 = 38;
    pub const ETIMEDOUT: i64 = 110;

    /// The symbolic name of errno `e` (positive), if it is one of these.
    pub const fn name(e: i64) -> Option<&'static str> {
        Some(match e {
            EPERM => "EPERM",
            ENOENT => "ENOENT",
            ESRCH => "ESRCH",
            EINTR => "EINTR",
            ECHILD => "ECHILD",
            EAGAIN => "EAGAIN",
            ENOMEM => "ENOMEM",
            EFAULT => "EFAULT",
            EBUSY => "EBUSY",
            EEXIST => "EEXIST",
            EINVAL => "EINVAL",
            EPIPE => "EPIPE",
            EDEADLK => "EDEADLK",
            ENOSYS => "ENOSYS",
            ETIMEDOUT => "ETIMEDOUT",
            _ => return None,
        })
    }
}

/// mmap/mprotect protection bits.
pub mod prot {
    pub const NONE: u64 = 0;
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const EXEC: u64 = 4;
    pub const ALL: u64 = READ | WRITE | EXEC;
}

/// mmap flags (memory is always anonymous and private).
pub mod map {
    /// Map exactly at `addr` (replacing what is there).
    pub const FIXED: u64 = 1;
    /// Map with 2 MiB blocks where a block-aligned 2 MiB of the mapping is
    /// touched and still empty (a non-fixed mapping of at least 2 MiB is
    /// placed block-aligned). Honoured unless the kernel runs with
    /// `mm.thp=never`; `mm.thp=always` implies it for every mapping.
    pub const HUGE: u64 = 2;
    /// Map with contiguous runs (16 pages, 64 KiB, one TLB entry) where an
    /// aligned 64 KiB of the mapping is touched and still empty. As
    /// [`HUGE`] for `mm.thp`.
    pub const CONT: u64 = 4;
    pub const ALL: u64 = FIXED | HUGE | CONT;
}

/// madvise advice.
pub mod advice {
    pub const DONTNEED: u64 = 4;
    /// Reclaim the range's present pages now: each goes to swap, unmapped
    /// from every address space that maps it (Linux's value).
    pub const PAGEOUT: u64 = 21;
    /// The range's mappings may use blocks and contiguous runs from now on
    /// (as `map::HUGE | map::CONT`; Linux's value).
    pub const HUGEPAGE: u64 = 14;
    /// The range's mappings use only 4 KiB pages for new faults (blocks
    /// and runs already there stay).
    pub const NOHUGEPAGE: u64 = 15;
    /// Replaces the pages of every block-aligned 2 MiB region wholly in
    /// the range by one block, copying what is present (Linux's value).
    pub const COLLAPSE: u64 = 25;
}

/// The asynchronous jobs of `nr::COPY_ASYNC`, `nr::WATCH_ASYNC` and
/// `nr::COPY_WAIT`.
pub mod copy {
    /// copy_wait flag: do not block; EAGAIN while the job runs.
    pub const NOWAIT: u64 = 1;
    pub const ALL: u64 = NOWAIT;
    /// Word of a watch log: the samples taken so far (rewritten after each).
    pub const LOG_SAMPLES: usize = 0;
    /// Word of a watch log: the values recorded so far.
    pub const LOG_RECORDED: usize = 1;
    /// First word of the values recorded: the first sample, then each
    /// sample that differs from the one before, while there is room. Each
    /// value is written before the count that includes it (with a barrier
    /// between), so a reader that reads the count first (Acquire) finds the
    /// values it counts.
    pub const LOG_VALUES: usize = 2;
    /// The smallest log, in bytes: the two counts and one value.
    pub const LOG_MIN: u64 = 8 * (LOG_VALUES as u64 + 1);
}

/// The secondary-MMU devices of `nr::DEV_BIND` .. `nr::DEV_WAIT`: their
/// jobs, reports and counters.
pub mod device {
    /// Devices (numbered from 0).
    pub const COUNT: usize = 2;
    /// Words of a job: [`KIND`], [`DST`], [`SRC`], [`LEN`], [`ARG`].
    pub const JOB_WORDS: usize = 5;
    pub const KIND: usize = 0;
    pub const DST: usize = 1;
    pub const SRC: usize = 2;
    pub const LEN: usize = 3;
    pub const ARG: usize = 4;
    /// Copy `LEN` bytes from `SRC` to `DST` (ranges must not overlap);
    /// result: `LEN`.
    pub const COPY: u64 = 0;
    /// Write byte `ARG` (< 256) to `LEN` bytes at `DST`; result: `LEN`.
    pub const FILL: u64 = 1;
    /// Sum of the `LEN` bytes at `SRC`; result: the sum.
    pub const CHECKSUM: u64 = 2;
    /// Read the u64 at `SRC` (8-byte aligned) over and over for `LEN`
    /// nanoseconds (at most `limits::MAX_WATCH_NS`) or until
    /// [`STOP`]; after each read write the number of reads so far to the
    /// u64 at `DST` (8-byte aligned; 0: nowhere). Result: the reads; the
    /// values seen are in the report. `ARG`: [`WATCH_THROUGH_FAULTS`] or 0.
    pub const WATCH: u64 = 3;
    /// A watch that meets memory it may not read counts a fault and goes
    /// on (without it, the watch ends with EFAULT).
    pub const WATCH_THROUGH_FAULTS: u64 = 1;
    /// Jobs of one binding queued, running, or done and not waited for.
    pub const MAX_QUEUE: usize = 8;
    /// dev_wait flag: do not block; EAGAIN while the job runs.
    pub const NOWAIT: u64 = 1;
    /// dev_wait flag: a watch stops at its next read (then the wait).
    pub const STOP: u64 = 2;
    pub const WAIT_FLAGS: u64 = NOWAIT | STOP;
    /// Words of a job's report ([`REPORT_READS`] ..).
    pub const REPORT_WORDS: usize = REPORT_VALUES + REPORT_MAX_VALUES;
    /// Reads a watch made.
    pub const REPORT_READS: usize = 0;
    /// Reads a watch found no translation for (with [`WATCH_THROUGH_FAULTS`]).
    pub const REPORT_FAULTS: usize = 1;
    /// Reads whose value differed from the read before.
    pub const REPORT_CHANGES: usize = 2;
    /// Values in the log from [`REPORT_VALUES`] on: the first read's, then
    /// each that differed from the read before, while there is room.
    pub const REPORT_LOGGED: usize = 3;
    pub const REPORT_VALUES: usize = 4;
    pub const REPORT_MAX_VALUES: usize = 8;

    /// Words of `stats(stats::DEVICE + dev)`, one counter each since boot.
    pub const STAT_COUNT: usize = 8;
    /// Translations the device walked the tables for and cached.
    pub const FILLS: usize = 0;
    /// Translations found in its cache.
    pub const HITS: usize = 1;
    /// Accesses retried: an invalidation was open or raced the walk.
    pub const RETRIES: usize = 2;
    /// Accesses no valid translation allowed.
    pub const FAULTS: usize = 3;
    /// Invalidations handled.
    pub const INVALS: usize = 4;
    /// Cached translations those invalidations (and unbinds) dropped.
    pub const DROPPED: usize = 5;
    /// Jobs ended.
    pub const JOBS: usize = 6;
    /// Times a CPU waiting for the device's acknowledgement served its
    /// invalidations itself (the device was between accesses, or idle).
    pub const SERVED_BY_WAITER: usize = 7;
    /// The names of the words, in order.
    pub const STAT_NAMES: [&str; STAT_COUNT] =
        ["fills", "hits", "retries", "faults", "invals", "dropped", "jobs", "served_by_waiter"];
}

/// `stats(which, ...)` selectors.
pub mod stats {
    /// [free frames, total frames].
    pub const FRAMES: u64 = 0;
    /// Bad system calls rejected since boot (one word).
    pub const BAD_SYSCALLS: u64 = 1;
    /// TLBI counts summed over CPUs, one word per `OpKind` in its order
    /// ([`TLBI_KINDS`] words), then the DSB count (word [`TLBI_DSB`]); then
    /// the repeat-TLBI workaround's own TLBIs (`tlb.repeat_tlbi`), one word
    /// per kind in the same order, and its DSBs (word [`TLBI_REPEAT_DSB`]).
    /// The workaround's instructions are counted there only.
    pub const TLBI: u64 = 2;
    /// TLBI kinds: the kernel's `OpKind::COUNT`.
    pub const TLBI_KINDS: usize = 12;
    /// The names of the [`TLBI_KINDS`] words, in order (the kernel's
    /// `OpKind` names, checked at build time).
    pub const TLBI_NAMES: [&str; TLBI_KINDS] = [
        "vae1",
        "vale1",
        "rvae1",
        "rvale1",
        "aside1",
        "vmalle1",
        "vae1is",
        "vale1is",
        "rvae1is",
        "rvale1is",
        "aside1is",
        "vmalle1is",
    ];
    /// Word of [`TLBI`] holding the DSB count.
    pub const TLBI_DSB: usize = TLBI_KINDS;
    /// First word of [`TLBI`] holding the workaround's TLBIs by kind.
    pub const TLBI_REPEAT: usize = TLBI_DSB + 1;
    /// Word of [`TLBI`] holding the workaround's DSBs.
    pub const TLBI_REPEAT_DSB: usize = TLBI_REPEAT + TLBI_KINDS;
    /// Words [`TLBI`] writes.
    pub const TLBI_WORDS: usize = TLBI_REPEAT_DSB + 1;
    /// [rollovers, slow-path allocations, fast-path switches, rollover
    /// flushes, pinned] of the ASID allocator.
    pub const ASID: u64 = 3;
    /// Page faults handled since boot (one word).
    pub const PAGE_FAULTS: u64 = 4;
    /// [CPUs online].
    pub const CPUS: u64 = 5;
    /// [frames found written after they were freed (poison check)].
    pub const POISON: u64 = 6;
    /// Kernel resources in use now, one word each, indexed by
    /// [`super::resources`]: what leak tests compare against a baseline.
    pub const RESOURCES: u64 = 8;
    /// TLB decisions, summed over CPUs, one word each (the kernel's
    /// `mm::tlb::Event` in order, 30 words), indexed by [`super::events`]
    /// and named by [`EVENT_NAMES`].
    pub const EVENTS: u64 = 7;
    /// `EVENTS_CPU + cpu`: the same words for one CPU (`cpu` < 8).
    pub const EVENTS_CPU: u64 = 16;
    /// `TLBI_CPU + cpu`: the words of [`TLBI`] for one CPU (`cpu` < 8).
    pub const TLBI_CPU: u64 = 24;
    /// By-address TLBIs summed over CPUs by kind and TTL hint level, 32
    /// words: for each of [`TTL_KINDS`], the ops with no hint, then with
    /// level 1, 2 and 3 (word `4 * kind + level`). For those kinds they add
    /// up to the words of [`TLBI`].
    pub const TLBI_TTL: u64 = 9;
    /// The kinds of [`TLBI_TTL`], in order.
    pub const TTL_KINDS: [&str; 8] = ["vae1", "vale1", "rvae1", "rvale1", "vae1is", "vale1is", "rvae1is", "rvale1is"];
    /// `DEVICE + dev`: device `dev`'s counters (`dev` <
    /// [`super::device::COUNT`]), indexed by [`super::device`]'s `FILLS` ..
    pub const DEVICE: u64 = 40;
    /// The names of the words of [`EVENTS`], in order.
    pub const EVENT_NAMES: [&str; 30] = [
        "exit_elided",
        "nested_full_flush",
        "racing_full_flush",
        "exit_local_flush",
        "decide_local",
        "decide_ipi",
        "decide_broadcast",
        "ipi_sent",
        "ipi_received",
        "lazy_skip",
        "lazy_leave",
        "catch_up_partial",
        "catch_up_full",
        "catch_up_none",
        "stale_flush",
        "ipi_timeout",
        "mn_range",
        "sec_inval",
        "reclaim_unmap",
        "reclaim_batch",
        "batched_pending_flush",
        "swap_in",
        "repeat_local_exempt",
        "block_fill",
        "run_fill",
        "block_split",
        "run_unfold",
        "split_no_break",
        "collapse",
        "block_cow_copy",
    ];
}

/// Word indices of `stats(EVENTS)`: the kernel's `mm::tlb::Event` in order
/// (the kernel checks at build time that the two agree).
pub mod events {
    /// Exits whose flush was elided.
    pub const EXIT_ELIDED: usize = 0;
    /// Zaps that flushed the whole ASID because another was in flight.
    pub const NESTED_FULL_FLUSH: usize = 1;
    /// Locked calls and faults that flushed the whole ASID because a zap
    /// was in flight.
    pub const RACING_FULL_FLUSH: usize = 2;
    /// CPUs that left a dying address space with a local ASID flush.
    pub const EXIT_LOCAL_FLUSH: usize = 3;
    /// Flushes the strategy (`tlb.strategy`) made local: the mm's one user
    /// runs on the flushing CPU.
    pub const DECIDE_LOCAL: usize = 4;
    /// Flushes sent as IPIs to the CPUs that hold the mm.
    pub const DECIDE_IPI: usize = 5;
    /// Flushes broadcast.
    pub const DECIDE_BROADCAST: usize = 6;
    /// IPIs sent (one per target CPU).
    pub const IPI_SENT: usize = 7;
    /// IPIs received and served.
    pub const IPI_RECEIVED: usize = 8;
    /// Lazy CPUs a flush skipped (one per CPU and flush).
    pub const LAZY_SKIP: usize = 9;
    /// Lazy CPUs that left an mm because its tables were being freed (or
    /// it was torn down).
    pub const LAZY_LEAVE: usize = 10;
    /// IPI targets one generation behind: they flushed the range.
    pub const CATCH_UP_PARTIAL: usize = 11;
    /// IPI targets further behind: they flushed the whole ASID.
    pub const CATCH_UP_FULL: usize = 12;
    /// IPI targets already current.
    pub const CATCH_UP_NONE: usize = 13;
    /// CPUs that flushed an mm's ASID because they were behind its flush
    /// generation when they went back to it.
    pub const STALE_FLUSH: usize = 14;
    /// Shootdowns not acknowledged in time (repeated as a broadcast).
    pub const IPI_TIMEOUT: usize = 15;
    /// Operations that changed a subscribed mm's entries inside invalidate-range start and end (counted at the start).
    pub const MN_RANGE: usize = 16;
    /// Invalidations sent to secondary MMUs (one per device and flush).
    pub const SEC_INVAL: usize = 17;
    /// Mappings reclaim unmapped (one per mm and page), their TLBIs issued without a DSB.
    pub const RECLAIM_UNMAP: usize = 18;
    /// Reclaim batches completed by one DSB on the CPU that issued their TLBIs.
    pub const RECLAIM_BATCH: usize = 19;
    /// Calls that found a reclaim batch pending on their mm and flushed its ASID first.
    pub const BATCHED_PENDING_FLUSH: usize = 20;
    /// Pages read back from swap on a fault.
    pub const SWAP_IN: usize = 21;
    /// Local TLB flushes completed while a repeat-TLBI mode was on: not
    /// repeated (the errata concern broadcast invalidation only).
    pub const REPEAT_LOCAL_EXEMPT: usize = 22;
    /// First touches that mapped a whole block (2 MiB) of zeroes.
    pub const BLOCK_FILL: usize = 23;
    /// First touches that mapped a whole contiguous run (64 KiB) of zeroes.
    pub const RUN_FILL: usize = 24;
    /// Blocks split into pages (break-before-make: cleared, flushed, then the table linked).
    pub const BLOCK_SPLIT: usize = 25;
    /// Contiguous runs unfolded into plain pages (cleared, flushed, rewritten).
    pub const RUN_UNFOLD: usize = 26;
    /// Splits and unfolds made without the break, as FEAT_BBM level 2 permits (counted as well as the split).
    pub const SPLIT_NO_BREAK: usize = 27;
    /// Regions collapsed into one block or run (MADV_COLLAPSE).
    pub const COLLAPSE: usize = 28;
    /// Copy-on-write faults that copied a whole block (`mm.block_cow=copy`).
    pub const BLOCK_COW_COPY: usize = 29;
    /// Words `stats(EVENTS)` writes.
    pub const COUNT: usize = 30;
}

/// Word indices of `stats(RESOURCES)`.
pub mod resources {
    /// Frames free in the frame allocator.
    pub const FREE_FRAMES: usize = 0;
    /// Page-table pages of user address spaces.
    pub const PT_PAGES: usize = 1;
    /// Kernel heap bytes in use (as the allocator rounds them).
    pub const HEAP_BYTES: usize = 2;
    /// Processes not yet reaped (running or zombie).
    pub const PROCESSES: usize = 3;
    /// Tasks (kernel and user threads) whose kernel stack is allocated.
    pub const TASKS: usize = 4;
    /// User threads that have not exited.
    pub const THREADS: usize = 5;
    /// Address spaces (mms) allocated.
    pub const MMS: usize = 6;
    /// IPC endpoints open.
    pub const ENDPOINTS: usize = 7;
    /// Address spaces that hold an ASID.
    pub const ASIDS: usize = 8;
    /// Kernel heap size in bytes.
    pub const HEAP_TOTAL: usize = 9;
    /// System calls refused with ENOMEM because the heap was at its
    /// reserve, since boot.
    pub const HEAP_REFUSALS: usize = 10;
    /// Kernel heap bytes holding the frame allocator's free lists (they
    /// grow and shrink with the fragmentation of physical memory, so they
    /// are not in `HEAP_BYTES`).
    pub const FRAME_LIST_BYTES: usize = 11;
    /// Swap slots in use (pages in swap, and slots of reclaim batches).
    pub const SWAP_SLOTS: usize = 12;
    /// Swap slots in the swap area (`swap.slots`).
    pub const SWAP_TOTAL: usize = 13;
    /// Words `stats(RESOURCES)` writes.
    pub const COUNT: usize = 14;

    /// What each word is, for messages.
    pub const NAMES: [&str; COUNT] = [
        "free frames",
        "page-table pages",
        "heap bytes",
        "processes",
        "tasks",
        "threads",
        "mms",
        "endpoints",
        "mms with an ASID",
        "heap total",
        "heap refusals",
        "frame-list heap bytes",
        "swap slots",
        "swap total",
    ];

    /// The words that come back to their value when everything started
    /// since has ended (the others are sizes and event counters).
    pub const LEVELS: [usize; 10] =
        [FREE_FRAMES, PT_PAGES, HEAP_BYTES, PROCESSES, TASKS, THREADS, MMS, ENDPOINTS, ASIDS, SWAP_SLOTS];
}

/// Per-process and global limits: a call that would pass one fails with the
/// errno named, and nothing changes.
pub mod limits {
    /// Threads alive in one process (thread_create: EAGAIN).
    pub const MAX_THREADS: usize = 128;
    /// Endpoints one process has open (ep_create: ENOMEM).
    pub const MAX_ENDPOINTS: usize = 64;
    /// Mappings (VMAs) in one address space (mmap, or a munmap or mprotect
    /// that would split one: ENOMEM).
    pub const MAX_MAPPINGS: usize = 4096;
    /// Calls one process has received and not yet replied to (ep_recv:
    /// EAGAIN).
    pub const MAX_PENDING_CALLS: usize = 64;
    /// Processes in the system, zombies included (spawn, fork: EAGAIN).
    pub const MAX_PROCESSES: usize = 1024;
    /// Asynchronous jobs (copy_async, watch_async) of one process, running
    /// or done and not yet waited for (EAGAIN).
    pub const MAX_JOBS: usize = 8;
    /// Asynchronous jobs in the system (EAGAIN).
    pub const MAX_JOBS_TOTAL: usize = 64;
    /// Bytes one copy_async copies at most (EINVAL).
    pub const MAX_COPY_LEN: u64 = 16 << 20;
    /// Nanoseconds one watch_async samples at most (EINVAL).
    pub const MAX_WATCH_NS: u64 = 10_000_000_000;
}

/// Exit status of a process the kernel killed: `KILLED_BASE + cause`.
pub const KILLED_BASE: i64 = 0x100;

/// Why the kernel killed a process.
pub mod cause {
    /// Access to an address with no mapping.
    pub const UNMAPPED: i64 = 1;
    /// Write to read-only memory (or exec of non-executable memory).
    pub const PROTECTION: i64 = 2;
    /// Access to a kernel address.
    pub const KERNEL_ADDRESS: i64 = 3;
    /// Undefined instruction.
    pub const ILLEGAL_INSTRUCTION: i64 = 4;
    /// `kill()` by another process or the reaper.
    pub const KILLED: i64 = 5;
    /// Misaligned PC or SP, or another fault.
    pub const OTHER_FAULT: i64 = 6;
    /// Out of memory while handling a fault.
    pub const OUT_OF_MEMORY: i64 = 7;
}

/// Highest user virtual address + 1 (48-bit TTBR0 range).
pub const USER_END: u64 = 1 << 48;

/// Bytes in a page (the 4 KiB translation granule), for the kernel, the
/// user programs and the harness alike.
pub const PAGE_SIZE: u64 = 4096;

/// Most CPUs the kernel brings up; per-CPU counters and the `_CPU` stats
/// selectors are sized by it.
pub const MAX_CPUS: usize = 8;

/// The in-kernel test records: the kernel's `ktest!` puts one per test in
/// the ELF section [`ktest::SECTION`]; the harness reads them from the
/// image to plan its boots.
pub mod ktest {
    /// The section's name.
    pub const SECTION: &str = ".ktests";
    /// Bytes per record.
    pub const RECORD_SIZE: usize = 72;
    /// Byte offsets in a record: three strings as (address, length) pairs
    /// of u64 (the test's name, QEMU `-cpu`, extra kernel options), four
    /// u32 and the test function's address.
    pub const NAME: usize = 0;
    pub const CPU: usize = 16;
    pub const APPEND: usize = 32;
    pub const CPUS: usize = 48;
    pub const MEM_MB: usize = 52;
    pub const TIMEOUT_S: usize = 56;
    pub const FLAGS: usize = 60;
    pub const FUNC: usize = 64;
    /// `FLAGS`: the test needs a QEMU boot of its own.
    pub const FLAG_FRESH: u32 = 1 << 0;
    /// `FLAGS`: boot at EL2 (`-M virt,virtualization=on`).
    pub const FLAG_EL2: u32 = 1 << 1;
}

/// The argument of a benchmark program (`run=PROGRAM:ARG`): the fields in
/// one word, packed by the harness and unpacked by the program.
pub mod bench_arg {
    /// N (bits 0..32): the workload's size (pages, bytes, MiB: its own).
    pub const N: (u32, u32) = (0, 32);
    /// R (bits 32..40): repetitions.
    pub const REPS: (u32, u32) = (32, 8);
    /// K (bits 40..56): operations per repetition.
    pub const OPS: (u32, u32) = (40, 16);
    /// F (bits 56..60): workload flags.
    pub const FLAGS: (u32, u32) = (56, 4);
    /// T (bits 60..64): threads (0: the workload's default).
    pub const THREADS: (u32, u32) = (60, 4);

    const fn put(v: u64, (at, bits): (u32, u32)) -> u64 {
        (v & ((1 << bits) - 1)) << at
    }

    /// Field `f` of `raw`.
    pub const fn get(raw: u64, (at, bits): (u32, u32)) -> u64 {
        (raw >> at) & ((1 << bits) - 1)
    }

    /// Packs the fields (each cut to its width).
    pub const fn encode(n: u64, reps: u64, ops: u64, flags: u64, threads: u64) -> u64 {
        put(n, N) | put(reps, REPS) | put(ops, OPS) | put(flags, FLAGS) | put(threads, THREADS)
    }
}

/// Exit statuses of a run, through semihosting (kvm-unit-tests'
/// convention): what the kernel exits with and the harness reads.
pub mod exit {
    /// Every test passed (or the workload succeeded).
    pub const PASS: i32 = 0;
    /// A test failed.
    pub const FAIL: i32 = 1;
    /// A bad kernel command line.
    pub const USAGE: i32 = 2;
    /// The kernel itself crashed (unexpected exception or panic outside a test).
    pub const CRASH: i32 = 3;
    /// Every test was skipped.
    pub const SKIP: i32 = 77;
}
/// Where built-in programs are loaded.
pub const USER_TEXT_BASE: u64 = 0x40_0000;
/// Top of the main thread's stack.
pub const USER_STACK_TOP: u64 = 0x7fff_0000_0000;
/// Size of the main thread's stack.
pub const USER_STACK_SIZE: u64 = 256 * 1024;
/// Start of the region non-fixed `mmap` allocates from.
pub const MMAP_BASE: u64 = 0x10_0000_0000;

/// Region markers for the TCG plugin (`tests/qemu-plugin`): `HINT #imm`
/// instructions that a guest program executes around a region it wants
/// counted on its own (the `bench_*` programs put them around their timed
/// repetitions). The immediates are in the architecturally unallocated part
/// of the hint space, which the architecture and QEMU execute as `NOP`:
/// without the plugin they cost one instruction each.
pub mod marker {
    /// `HINT #0x7e`: a counted region begins after this instruction.
    pub const BEGIN: u32 = 0x7e;
    /// `HINT #0x7f`: the counted region ends before this instruction.
    pub const END: u32 = 0x7f;

    /// The A64 encoding of `HINT #imm` (`NOP` is `HINT #0`).
    pub const fn hint(imm: u32) -> u32 {
        0xd503_201f | (imm & 0x7f) << 5
    }
}
