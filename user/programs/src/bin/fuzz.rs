//! fuzz: random system calls with edge-value arguments, from several
//! threads and processes pinned to every CPU, with fork/exit/kill churn
//! alongside. arg = seed (bits 0..32) | thousands of calls (bits 32..64;
//! 0: 20). The same seed makes every thread issue the same calls in the
//! same order (what they return depends on timing).
//!
//! A supervisor (this process) forks one worker per CPU and replaces each
//! worker that ends until the workers have made the calls asked for; a
//! churn process (`userland::churn`, one lifecycle per 20 calls asked for)
//! runs meanwhile.
//! Each worker has a main thread, whose calls never block for long, and
//! helper threads, which may block for ever (in futex_wait, ep_recv, join,
//! a sleep of u64::MAX ns...) until the worker exits and the kernel kills
//! them. Workers report counts per system call and result to the
//! supervisor, which prints them at the end:
//! `fuzz: seed S: N calls, W workers (D died), L lifecycles`.
//! Exit 0 unless setup failed (1) or the churn saw wrong memory (2). The
//! kernel panicking or leaking is what the caller checks.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use oorandom::Rand64;
use ulib::abi::copy as abi_copy;
use ulib::abi::device as abi_device;
use ulib::abi::{advice, map, nr, prot, stats, USER_END};
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::sys::{self, Fork};
use ulib::{println, raw, thread, Errno};
use userland::churn;
use userland::{fail, try_sys};

/// Helper threads per worker besides its main thread.
const HELPERS: usize = 2;
/// Calls a thread makes between two reports to the supervisor.
const REPORT_EVERY: u64 = 500;
/// Calls a forked grandchild makes before it exits.
const CHILD_CALLS: u64 = 40;
/// Result classes counted per call: 0 = success, else the errno (clamped).
const CLASSES: usize = 40;
/// Calls counted apart (the last row: unknown numbers).
const CALLS_COUNTED: usize = nr::COUNT as usize + 1;
/// Report message tag (word 0, high half).
const TAG: u64 = 0xf022_0000;
/// The churn process's report tag.
const CHURN_TAG: u64 = 0xc4a2_0000;
/// One memory call in this many may reach outside the arena (and may
/// unmap the worker's own stack or code: the worker then dies).
const WILD: u64 = 500;

/// Counts of one thread since its last report: [call][class].
struct Counts([[u32; CLASSES]; CALLS_COUNTED]);

impl Counts {
    const fn new() -> Self {
        Counts([[0; CLASSES]; CALLS_COUNTED])
    }

    fn add(&mut self, n: u64, r: u64) {
        let row = (n as usize).min(CALLS_COUNTED - 1);
        let class = match Errno::result(r) {
            Ok(_) => 0,
            Err(e) => (e.0 as usize).clamp(1, CLASSES - 1),
        };
        self.0[row][class] += 1;
    }

    /// Sends the non-zero counts to `ep`, three per message, and clears
    /// them. Returns the calls reported.
    fn report(&mut self, ep: u64) -> u64 {
        let mut sent = 0;
        let mut msg = [TAG << 32, 0, 0, 0];
        let mut k = 1;
        for (row, classes) in self.0.iter_mut().enumerate() {
            for (class, n) in classes.iter_mut().enumerate() {
                if *n == 0 {
                    continue;
                }
                msg[k] = (row as u64) << 56 | (class as u64) << 48 | u64::from(*n);
                sent += u64::from(*n);
                *n = 0;
                k += 1;
                if k == 4 {
                    let _ = sys::ep_call(ep, msg);
                    msg = [TAG << 32, 0, 0, 0];
                    k = 1;
                }
            }
        }
        if k > 1 {
            let _ = sys::ep_call(ep, msg);
        }
        sent
    }
}

/// What a worker knows: its arena, endpoints, ids to pick from.
struct World {
    /// The supervisor's report endpoint: never fuzzed. (Pids need no such
    /// care: kill reaches only this process and its descendants.)
    report_ep: u64,
    /// A read-write scratch mapping, a read-only one, and an arena of
    /// address space that only fixed mmaps of this worker use.
    scratch: u64,
    readonly: u64,
    arena: u64,
    /// Endpoints this worker created.
    eps: [AtomicU64; 4],
    /// Futex words.
    words: [AtomicU32; 4],
    /// Threads and children this worker started (tids, pids), and tickets
    /// of its jobs.
    tids: [AtomicU64; 8],
    pids: [AtomicU64; 8],
    tickets: [AtomicU64; 8],
    /// Ids of its device jobs.
    dev_jobs: [AtomicU64; 8],
}

const ARENA: u64 = 64 * PAGE_SIZE;

impl World {
    /// An address argument: own memory (writable, read-only, code),
    /// unmapped, null, kernel, unaligned, the top of user space.
    fn addr(&self, r: &mut Rand64) -> u64 {
        match r.rand_range(0..12) {
            0 | 1 => self.scratch + r.rand_range(0..PAGE_SIZE * 4),
            2 => self.readonly + r.rand_range(0..PAGE_SIZE),
            3 => ulib::rt::image().0 + r.rand_range(0..PAGE_SIZE),
            4 => 0,
            5 => 0xffff_0000_4000_0000 + r.rand_u64() % (1 << 30),
            6 => USER_END - 8,
            7 => u64::MAX,
            8 => self.arena + 8 * r.rand_range(0..ARENA / 8) + 1,
            9 => userland::UNMAPPED_ADDR + PAGE_SIZE * r.rand_range(0..16),
            _ => r.rand_u64(),
        }
    }

    /// A page-aligned address for the memory calls: the arena mostly, so
    /// that fixed mmaps and munmaps never hit the code, stack or scratch.
    fn page(&self, r: &mut Rand64) -> u64 {
        match r.rand_range(0..10) {
            0..=5 => self.arena + PAGE_SIZE * r.rand_range(0..ARENA / PAGE_SIZE),
            6 => 0,
            7 => USER_END,
            8 => 0xffff_0000_4000_0000,
            _ => self.arena + r.rand_range(1..PAGE_SIZE),
        }
    }

    /// A length for a memory call at `addr`: inside the arena it stays
    /// inside (but for one call in [`WILD`]).
    fn mem_len(&self, addr: u64, r: &mut Rand64) -> u64 {
        let len = self.len(r);
        let end = self.arena + ARENA;
        if (self.arena..end).contains(&addr) && r.rand_range(0..WILD) != 0 {
            len.min(end - addr)
        } else {
            len
        }
    }

    fn len(&self, r: &mut Rand64) -> u64 {
        match r.rand_range(0..9) {
            0 => 0,
            1 => 1,
            2 | 3 => PAGE_SIZE * r.rand_range(1..8),
            4 => PAGE_SIZE + 1,
            5 => u64::MAX,
            6 => 1 << 47,
            7 => ARENA,
            _ => r.rand_range(0..3 * PAGE_SIZE),
        }
    }

    fn pick(&self, slots: &[AtomicU64], r: &mut Rand64) -> u64 {
        match r.rand_range(0..6) {
            0 => 0,
            1 => u64::MAX,
            2 => r.rand_range(1..64),
            _ => slots[r.rand_range(0..slots.len() as u64) as usize].load(Ordering::Relaxed),
        }
    }

    fn ep(&self, r: &mut Rand64) -> u64 {
        let e = self.pick(&self.eps, r);
        if e == self.report_ep {
            0
        } else {
            e
        }
    }

    fn pid(&self, r: &mut Rand64) -> u64 {
        match r.rand_range(0..64) {
            0 => sys::getpid(),
            1..=7 => sys::getpid() - r.rand_range(1..8).min(sys::getpid()),
            8..=15 => sys::getpid() + r.rand_range(1..8),
            _ => self.pick(&self.pids, r),
        }
    }

    fn remember(slots: &[AtomicU64], r: &mut Rand64, v: u64) {
        slots[r.rand_range(0..slots.len() as u64) as usize].store(v, Ordering::Relaxed);
    }
}

fn coin(r: &mut Rand64) -> bool {
    r.rand_u64() & 1 != 0
}

/// Makes one random call. `may_block`: the call may sleep for ever (helper
/// threads only). Returns (number, raw result).
fn one_call(w: &World, r: &mut Rand64, may_block: bool, grandchild: &mut bool) -> (u64, u64) {
    let n = r.rand_range(0..nr::COUNT + 2);
    // SAFETY: for every raw call below, the addresses given as buffers the
    // kernel may write are either outside this process's memory (the
    // kernel refuses them) or inside the scratch mapping, which no Rust
    // reference covers; memory calls act on the arena, which nothing else
    // uses; calls that end threads or processes are chosen only where the
    // caller can lose that thread. So no call can change memory that Rust
    // code relies on.
    let res = unsafe {
        match n {
            nr::EXIT => return (nr::GETPID, raw::syscall0(nr::GETPID)),
            nr::THREAD_EXIT => return (nr::THREAD_EXIT, 0), // see `fuzz_loop`
            nr::WRITE => {
                // Never a valid buffer with a length: no console spam.
                let (a, l) = if coin(r) { (w.scratch, 0) } else { (w.addr(r) | 1 << 63, w.len(r)) };
                raw::syscall2(n, a, l)
            }
            nr::MMAP => {
                let flags = match r.rand_range(0..4) {
                    0 => map::FIXED,
                    1 => r.rand_u64(),
                    _ => 0,
                };
                let addr = if flags == map::FIXED { w.page(r) } else { w.addr(r) & !(PAGE_SIZE - 1) };
                let p = if r.rand_range(0..8) == 0 { r.rand_u64() } else { r.rand_range(0..8) };
                let len = w.mem_len(addr, r);
                let got = raw::syscall4(n, addr, len, p, flags);
                // A non-fixed mapping lands outside the arena: undo it.
                if flags != map::FIXED && (got as i64) > 0 {
                    raw::syscall2(nr::MUNMAP, got, len);
                }
                got
            }
            nr::MUNMAP => {
                let a = w.page(r);
                raw::syscall2(n, a, w.mem_len(a, r))
            }
            nr::MPROTECT => {
                let a = w.page(r);
                raw::syscall3(n, a, w.mem_len(a, r), r.rand_range(0..9))
            }
            nr::MADVISE => {
                let adv = match r.rand_range(0..4) {
                    0 | 1 => advice::DONTNEED,
                    2 => advice::PAGEOUT,
                    _ => r.rand_range(0..8),
                };
                let a = w.page(r);
                raw::syscall3(n, a, w.mem_len(a, r), adv)
            }
            nr::SPAWN => {
                let names: [&str; 3] = ["exiter", "no-such", ""];
                let name = names[r.rand_range(0..3) as usize];
                let (p, l) = match r.rand_range(0..4) {
                    0 => (w.addr(r), w.len(r)),
                    _ => (name.as_ptr() as u64, name.len() as u64),
                };
                let got = raw::syscall3(n, p, l, r.rand_range(0..256));
                if (got as i64) > 0 {
                    World::remember(&w.pids, r, got);
                    if !may_block {
                        // Reap it now, so zombies do not pile up.
                        raw::syscall2(nr::WAIT, got, 0);
                    }
                }
                got
            }
            nr::FORK => {
                let got = raw::syscall0(n);
                if got == 0 {
                    *grandchild = true;
                } else if (got as i64) > 0 {
                    World::remember(&w.pids, r, got);
                    if !may_block {
                        // The grandchild makes a few calls that do not block
                        // and exits: wait for it, so zombies do not pile up.
                        raw::syscall2(nr::WAIT, got, 0);
                    }
                }
                got
            }
            nr::WAIT => {
                let pid = if coin(r) { u64::MAX } else { w.pid(r) };
                let status = if coin(r) { w.scratch } else { w.addr(r) };
                if !may_block && pid == u64::MAX {
                    // Only children that end soon: reap one if any is done.
                    raw::syscall2(nr::GETPID, 0, 0)
                } else {
                    raw::syscall2(n, pid, status)
                }
            }
            nr::THREAD_CREATE => {
                // Bad arguments only here: real threads come from
                // `fuzz_loop` (a random entry would run garbage).
                let entry = [0, USER_END, 1 << 63][r.rand_range(0..3) as usize];
                raw::syscall3(n, entry, w.addr(r), r.rand_u64())
            }
            nr::JOIN => {
                let tid = if may_block { w.pick(&w.tids, r) } else { [0, u64::MAX, 9999][r.rand_range(0..3) as usize] };
                raw::syscall1(n, tid)
            }
            nr::SLEEP => {
                let ns = if may_block && r.rand_range(0..50) == 0 { u64::MAX } else { r.rand_range(0..200_000) };
                raw::syscall1(n, ns)
            }
            nr::SET_AFFINITY => {
                raw::syscall1(n, [u64::MAX, 0, 1, 2, 3, 4, 64, r.rand_u64()][r.rand_range(0..8) as usize])
            }
            nr::STATS => {
                let buf = if coin(r) { w.scratch } else { w.addr(r) };
                raw::syscall3(n, r.rand_range(0..12), buf, r.rand_range(0..20))
            }
            nr::EP_CREATE => {
                let got = raw::syscall0(n);
                if (got as i64) > 0 {
                    World::remember(&w.eps, r, got);
                }
                got
            }
            nr::EP_CALL => {
                let ep = w.ep(r);
                if may_block || ep == 0 || ep > (1 << 40) {
                    raw::syscall5(n, ep, 1, 2, 3, 4)
                } else {
                    raw::syscall0(nr::GETPID)
                }
            }
            nr::EP_RECV => {
                let ep = w.ep(r);
                if may_block || ep == 0 || ep > (1 << 40) {
                    raw::syscall1(n, ep)
                } else {
                    raw::syscall0(nr::GETPID)
                }
            }
            nr::EP_REPLY => raw::syscall5(n, r.rand_range(0..4096), 0, 0, 0, 0),
            nr::FUTEX_WAIT => {
                let word = &w.words[r.rand_range(0..4) as usize];
                let (addr, expected) = match r.rand_range(0..5) {
                    0 => (w.addr(r), r.rand_u64()),
                    1 if may_block => (word.as_ptr() as u64, u64::from(word.load(Ordering::Relaxed))),
                    _ => (word.as_ptr() as u64, u64::from(word.load(Ordering::Relaxed)) + 1),
                };
                raw::syscall3(n, addr, expected, if r.rand_range(0..8) == 0 { 1000 } else { 0 })
            }
            nr::FUTEX_WAKE => {
                let word = &w.words[r.rand_range(0..4) as usize];
                word.fetch_add(1, Ordering::Relaxed);
                let addr = if coin(r) { word.as_ptr() as u64 } else { w.addr(r) };
                raw::syscall2(n, addr, r.rand_range(0..4))
            }
            nr::KILL => {
                let pid = w.pid(r);
                if pid == sys::getpid() && !may_block {
                    raw::syscall0(nr::GETPID)
                } else {
                    raw::syscall1(n, pid)
                }
            }
            nr::FAULT_RESUME => raw::syscall1(n, [0, USER_END, u64::MAX][r.rand_range(0..3) as usize]),
            nr::COPY_ASYNC | nr::WATCH_ASYNC => {
                // Destinations are own memory (where the kernel may write
                // only the scratch and the arena) or memory it may not write.
                let cpu = [u64::MAX, 0, 1, 3, 4, 64, r.rand_u64()][r.rand_range(0..7) as usize];
                let ns = [0, 1000, 100_000, 2_000_000, 20_000_000_000, u64::MAX][r.rand_range(0..6) as usize];
                let len = if coin(r) { w.len(r) } else { r.rand_range(0..3 * PAGE_SIZE) };
                let got = if n == nr::COPY_ASYNC {
                    raw::syscall4(n, w.addr(r), w.addr(r), len, cpu)
                } else if coin(r) {
                    raw::syscall5(n, w.addr(r), w.addr(r), len, cpu, ns)
                } else {
                    // Aligned, with a log of a valid length: mostly accepted.
                    let (log, src) = (w.addr(r) & !7, w.addr(r) & !7);
                    raw::syscall5(n, log, src, 8 * r.rand_range(3..64), cpu, ns)
                };
                if (got as i64) > 0 {
                    World::remember(&w.tickets, r, got);
                }
                got
            }
            nr::COPY_WAIT => {
                let ticket = w.pick(&w.tickets, r);
                // Jobs end within 2 ms (or at once), so a wait does not block
                // for long; the main thread only polls.
                let flags = match r.rand_range(0..8) {
                    0 => r.rand_u64(),
                    1..=3 => abi_copy::NOWAIT,
                    _ if may_block => 0,
                    _ => abi_copy::NOWAIT,
                };
                raw::syscall2(n, ticket, flags)
            }
            nr::DEV_BIND | nr::DEV_UNBIND => raw::syscall1(n, [0, 1, 2, u64::MAX][r.rand_range(0..4) as usize]),
            nr::DEV_SUBMIT => {
                // Jobs on own memory, as for copy_async: the device may write
                // only the scratch and the arena. Watches end within 2 ms.
                let kind = r.rand_range(0..5);
                let len = if kind == abi_device::WATCH {
                    [0, 1000, 100_000, 2_000_000][r.rand_range(0..4) as usize]
                } else {
                    w.len(r)
                };
                let arg = [0, 1, 0x5a, 256, r.rand_u64()][r.rand_range(0..5) as usize];
                let (dst, src) = if coin(r) { (w.addr(r), w.addr(r)) } else { (w.addr(r) & !7, w.addr(r) & !7) };
                let job = [kind, dst, src, len, arg];
                let at = if r.rand_range(0..8) == 0 { w.addr(r) } else { job.as_ptr() as u64 };
                let got = raw::syscall2(n, r.rand_range(0..3), at);
                if (got as i64) > 0 {
                    World::remember(&w.dev_jobs, r, got);
                }
                got
            }
            nr::DEV_WAIT => {
                let id = w.pick(&w.dev_jobs, r);
                let report = if coin(r) { 0 } else { w.addr(r) };
                let flags = match r.rand_range(0..8) {
                    0 => r.rand_u64(),
                    1..=3 => abi_device::NOWAIT,
                    4 => abi_device::STOP | abi_device::NOWAIT,
                    5 if may_block => abi_device::STOP,
                    _ if may_block => 0,
                    _ => abi_device::NOWAIT,
                };
                raw::syscall4(n, r.rand_range(0..3), id, report, flags)
            }
            _ => raw::syscall6(n, r.rand_u64(), r.rand_u64(), r.rand_u64(), 0, 0, 0),
        }
    };
    (n, res)
}

/// A forked grandchild: a few calls that never block, then exit.
fn grandchild(w: &World, r: &mut Rand64) -> ! {
    let mut nested = false;
    for _ in 0..CHILD_CALLS {
        one_call(w, r, false, &mut nested);
        if nested {
            sys::exit(0);
        }
    }
    sys::exit(r.rand_range(0..256) as i32)
}

/// The fuzzing loop of one thread: `calls` calls (u64::MAX: until killed).
/// Helper threads (`may_block`) sometimes start another helper or end
/// themselves instead of a THREAD_CREATE or THREAD_EXIT with bad arguments.
fn fuzz_loop(w: &'static World, seed: u64, calls: u64, may_block: bool) -> u64 {
    let mut r = Rand64::new(u128::from(seed));
    let mut counts = Counts::new();
    let mut done = 0;
    while done < calls {
        let mut forked = false;
        let (n, res) = one_call(w, &mut r, may_block, &mut forked);
        if forked {
            grandchild(w, &mut r);
        }
        if n == nr::THREAD_EXIT {
            if may_block && r.rand_range(0..8) == 0 {
                counts.report(w.report_ep);
                sys::thread_exit(r.rand_range(0..256) as i32);
            }
            continue;
        }
        if n == nr::THREAD_CREATE && may_block && r.rand_range(0..8) == 0 {
            let hseed = r.rand_u64();
            if let Ok(t) = thread::spawn(move || {
                fuzz_loop(w, hseed, u64::MAX, true);
                0
            }) {
                World::remember(&w.tids, &mut r, t.tid());
                drop(t); // detached: the world joins it by tid
            }
        }
        counts.add(n, res);
        done += 1;
        if done % REPORT_EVERY == 0 {
            counts.report(w.report_ep);
        }
    }
    counts.report(w.report_ep);
    done
}

/// One worker process: `calls` calls on its main thread, helpers until it
/// exits. Never returns.
fn worker(report_ep: u64, seed: u64, calls: u64) -> ! {
    let (Ok(scratch), Ok(readonly), Ok(arena)) =
        (Mapping::pages(4), sys::mmap(PAGE_SIZE, prot::READ), sys::mmap(ARENA, prot::READ | prot::WRITE))
    else {
        sys::exit(1)
    };
    let w: &'static World = leak(World {
        report_ep,
        scratch: scratch.leak().as_ptr() as u64,
        readonly,
        arena,
        eps: [const { AtomicU64::new(0) }; 4],
        words: [const { AtomicU32::new(0) }; 4],
        tids: [const { AtomicU64::new(0) }; 8],
        pids: [const { AtomicU64::new(0) }; 8],
        tickets: [const { AtomicU64::new(0) }; 8],
        dev_jobs: [const { AtomicU64::new(0) }; 8],
    });
    let mut r = Rand64::new(u128::from(seed) << 1);
    for (i, slot) in w.eps.iter().enumerate() {
        slot.store(sys::ep_create().unwrap_or(1000 + i as u64), Ordering::Relaxed);
    }
    for h in 0..HELPERS as u64 {
        let hseed = seed ^ (h + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        if let Ok(t) = thread::spawn(move || {
            fuzz_loop(w, hseed, u64::MAX, true);
            0
        }) {
            World::remember(&w.tids, &mut r, t.tid());
            drop(t); // detached: the world joins it by tid
        }
    }
    fuzz_loop(w, seed, calls, false);
    sys::exit(0)
}

/// A `&'static` for data that lives as long as the process (no allocator).
fn leak(w: World) -> &'static World {
    static mut SLOT: core::mem::MaybeUninit<World> = core::mem::MaybeUninit::uninit();
    // SAFETY: called once per process (by the worker's main thread before
    // any other thread exists); nothing else touches SLOT.
    unsafe {
        let slot = &mut *core::ptr::addr_of_mut!(SLOT);
        slot.write(w)
    }
}

ulib::entry!(run);

/// Counts the supervisor's receiver thread adds up: per call and result.
static TABLE: [[AtomicU64; CLASSES]; CALLS_COUNTED] = [const { [const { AtomicU64::new(0) }; CLASSES] }; CALLS_COUNTED];
/// Calls reported so far.
static CALLS: AtomicU64 = AtomicU64::new(0);
/// The churn process's report.
static CHURN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// When the fuzzing started, and how often the receiver says how far it is.
static START_NS: AtomicU64 = AtomicU64::new(0);
static STARTED: AtomicU64 = AtomicU64::new(0);
/// Calls between two progress lines: a tenth of the run.
static PROGRESS_EVERY: AtomicU64 = AtomicU64::new(u64::MAX);

/// The supervisor's receiver: adds up reports until the process exits.
fn receive(ep: u64) -> i32 {
    loop {
        let (token, m) = match sys::ep_recv(ep) {
            Ok(x) => x,
            // At the heap reserve or the pending-call limit: try again.
            Err(Errno::ENOMEM) | Err(Errno::EAGAIN) => {
                sys::yield_now();
                continue;
            }
            Err(_) => return 1,
        };
        let _ = sys::ep_reply(token, [0; 4]);
        if m[0] >> 32 == CHURN_TAG {
            for (slot, &v) in CHURN.iter().zip(&m) {
                slot.store(v, Ordering::Relaxed);
            }
            continue;
        }
        if m[0] >> 32 != TAG {
            continue;
        }
        for &e in &m[1..] {
            let (row, class, n) = ((e >> 56) as usize, (e >> 48 & 0xff) as usize, e & 0xffff_ffff_ffff);
            if row < CALLS_COUNTED && class < CLASSES {
                TABLE[row][class].fetch_add(n, Ordering::Relaxed);
                let before = CALLS.fetch_add(n, Ordering::Relaxed);
                let every = PROGRESS_EVERY.load(Ordering::Relaxed);
                if (before + n) / every != before / every {
                    let s = (sys::time_ns() - START_NS.load(Ordering::Relaxed)) / 1_000_000_000;
                    println!(
                        "fuzz: {} calls after {s} s, {} workers started",
                        before + n,
                        STARTED.load(Ordering::Relaxed)
                    );
                }
            }
        }
    }
}

fn run(arg: u64) -> Result<(), i32> {
    let seed = arg & 0xffff_ffff;
    let target = if arg >> 32 == 0 { 20_000 } else { (arg >> 32).saturating_mul(1000) };
    let cpus = try_sys!(sys::stat(stats::CPUS), 1).max(1);
    let ep = try_sys!(sys::ep_create(), 1);
    // Calls per worker main thread: a few generations of workers per CPU.
    let per_worker = (target / (cpus * 4)).clamp(200, 50_000);

    // The churn process: its own lifecycles, reported at the end.
    let lifecycles = (target / 20).max(16);
    let churner = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            let msg = match churn::run(lifecycles, true, || false) {
                Ok(c) => [CHURN_TAG << 32, c.lifecycles(), c.killed, c.refused],
                Err(e) => {
                    println!("fuzz: FAIL: churn: {e}");
                    [CHURN_TAG << 32 | 1, 0, 0, 0]
                }
            };
            let _ = sys::ep_call(ep, msg);
            sys::exit((msg[0] & 1) as i32)
        }
        Fork::Parent(pid) => pid,
    };
    START_NS.store(sys::time_ns(), Ordering::Relaxed);
    PROGRESS_EVERY.store((target / 10).max(1), Ordering::Relaxed);
    let receiver = try_sys!(thread::spawn(move || receive(ep)), 1);
    drop(receiver); // detached: blocked in ep_recv until we exit

    // Workers, one per CPU, replaced as they end.
    let nworkers = (cpus as usize).min(8);
    let mut slots = [(0u64, 0u64); 8];
    let (mut started, mut died) = (0u64, 0u64);
    let start = |slot: usize, generation: u64| -> Result<u64, Errno> {
        let wseed = seed.wrapping_mul(0x100_0000_01b3) ^ (generation << 8 | slot as u64);
        match sys::fork()? {
            Fork::Child => {
                let _ = sys::set_affinity(Some(slot as u64 % cpus));
                worker(ep, wseed, per_worker)
            }
            Fork::Parent(pid) => Ok(pid),
        }
    };
    for (i, s) in slots.iter_mut().enumerate().take(nworkers) {
        *s = (try_sys!(start(i, 0), 1), 0);
        started += 1;
    }

    let mut churn_done = false;
    while CALLS.load(Ordering::Relaxed) < target {
        let (pid, status) = match sys::wait(None) {
            Ok(x) => x,
            Err(Errno::ECHILD) => break,
            Err(e) => fail!(1, "wait: {e}"),
        };
        if pid == churner {
            churn_done = true;
            continue;
        }
        let Some(i) = slots[..nworkers].iter().position(|&(p, _)| p == pid) else { continue };
        if status != 0 {
            died += 1;
        }
        if CALLS.load(Ordering::Relaxed) >= target {
            slots[i].0 = 0;
            break;
        }
        let generation = slots[i].1 + 1;
        slots[i] = (try_sys!(start(i, generation), 1), generation);
        started += 1;
        STARTED.store(started, Ordering::Relaxed);
    }
    // Stop the workers still running; wait for them and for the churn.
    for &(pid, _) in &slots[..nworkers] {
        if pid != 0 {
            let _ = sys::kill(pid);
        }
    }
    while let Ok((pid, _)) = sys::wait(None) {
        churn_done |= pid == churner;
    }
    let churn_ok = churn_done && CHURN[0].load(Ordering::Relaxed) == CHURN_TAG << 32;

    println!(
        "fuzz: seed {seed}: {} calls, {started} workers ({died} died), {} lifecycles alongside ({} killed)",
        CALLS.load(Ordering::Relaxed),
        CHURN[1].load(Ordering::Relaxed),
        CHURN[2].load(Ordering::Relaxed)
    );
    for (row, classes) in TABLE.iter().enumerate() {
        let mut line = LineBuf::new();
        for (class, n) in classes.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let _ = match (class, Errno(class as i64).name()) {
                (0, _) => core::fmt::write(&mut line, format_args!(" ok {n}")),
                (_, Some(e)) => core::fmt::write(&mut line, format_args!(" {e} {n}")),
                (c, None) => core::fmt::write(&mut line, format_args!(" errno{c} {n}")),
            };
        }
        if line.len > 0 {
            let name = nr::NAMES.get(row).copied().unwrap_or("(unknown)");
            println!("fuzz:   {name:<13}{}", line.as_str());
        }
    }
    if !churn_ok {
        fail!(2, "the churn alongside failed or did not report");
    }
    Ok(())
}

/// A line of text without an allocator.
struct LineBuf {
    buf: [u8; 400],
    len: usize,
}

impl LineBuf {
    fn new() -> Self {
        LineBuf { buf: [0; 400], len: 0 }
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl core::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
