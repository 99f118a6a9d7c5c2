//! Typed wrappers, one per call in `abi::nr`.
//!
//! Calls that can only hurt the caller through their arguments' *values*
//! (bad values come back as an [`Errno`]) are safe. Calls that can take away
//! memory Rust code may still be using (`munmap`, `mprotect`, `madvise`,
//! fixed `mmap`, `thread_create`) are `unsafe`; [`crate::mm::Mapping`] and
//! [`crate::thread`] are the safe ways to use them.

use core::sync::atomic::AtomicU32;

use abi::nr;

use crate::raw::*;
use crate::Errno;

/// A message or reply: the four words IPC carries.
pub type Msg = [u64; 4];

/// Which side of a [`fork`] this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fork {
    /// In the new process.
    Child,
    /// In the old process; the child's pid.
    Parent(u64),
}

/// Ends the process with `status` (its parent's `wait` sees it).
pub fn exit(status: i32) -> ! {
    // SAFETY: EXIT does not return; nothing this process owns is used after.
    unsafe { syscall1(nr::EXIT, status as i64 as u64) };
    unreachable!("EXIT returned")
}

/// Writes `bytes` to the console; returns how many were written.
pub fn write(bytes: &[u8]) -> Result<u64, Errno> {
    // SAFETY: the kernel only reads `bytes`, which is valid for its length.
    Errno::result(unsafe { syscall2(nr::WRITE, bytes.as_ptr() as u64, bytes.len() as u64) })
}

/// Maps `len` bytes of fresh zeroed anonymous memory where the kernel
/// chooses (from `abi::MMAP_BASE` up); returns its address.
pub fn mmap(len: u64, prot: u64) -> Result<u64, Errno> {
    // SAFETY: without `map::FIXED` the kernel picks an unused range, so no
    // memory in use changes.
    Errno::result(unsafe { syscall4(nr::MMAP, 0, len, prot, 0) })
}

/// `mmap(addr, len, prot, flags)` with every argument as given.
///
/// # Safety
/// With `map::FIXED` the new mapping replaces whatever was at `addr`: no
/// memory there may still be in use.
pub unsafe fn mmap_raw(addr: u64, len: u64, prot: u64, flags: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    Errno::result(unsafe { syscall4(nr::MMAP, addr, len, prot, flags) })
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// Nothing in the range may be used afterwards (a use faults and the kernel
/// kills the process).
pub unsafe fn munmap(addr: u64, len: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    Errno::result(unsafe { syscall2(nr::MUNMAP, addr, len) })
}

/// Changes the protection of `[addr, addr + len)` to `prot`.
///
/// # Safety
/// No reference Rust code holds into the range may need an access `prot`
/// no longer allows.
pub unsafe fn mprotect(addr: u64, len: u64, prot: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    Errno::result(unsafe { syscall3(nr::MPROTECT, addr, len, prot) })
}

/// `madvise(addr, len, advice)`.
///
/// # Safety
/// `advice::DONTNEED` replaces the contents with zeros: nothing may rely on
/// the old contents, and no live reference may point into the range.
pub unsafe fn madvise(addr: u64, len: u64, advice: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    Errno::result(unsafe { syscall3(nr::MADVISE, addr, len, advice) })
}

/// Starts built-in program `name` in a new process with `arg` in x0;
/// returns its pid.
pub fn spawn(name: &str, arg: u64) -> Result<u64, Errno> {
    // SAFETY: the kernel only reads `name`.
    Errno::result(unsafe { syscall3(nr::SPAWN, name.as_ptr() as u64, name.len() as u64, arg) })
}

/// Copies this process (the calling thread only).
pub fn fork() -> Result<Fork, Errno> {
    // SAFETY: the child gets a copy of this address space; neither side's
    // memory changes under it.
    let pid = Errno::result(unsafe { syscall0(nr::FORK) })?;
    Ok(if pid == 0 { Fork::Child } else { Fork::Parent(pid) })
}

/// Waits for child `pid` (`None`: any child) to end; returns its pid and
/// exit status (`abi::KILLED_BASE + cause` if the kernel killed it).
pub fn wait(pid: Option<u64>) -> Result<(u64, i64), Errno> {
    let target = pid.unwrap_or(u64::MAX); // -1: any child
                                          // Zeroed so that a kernel writing a 32-bit status still reads right.
    let mut status: i64 = 0;
    // SAFETY: the kernel writes one status word to `status`, a local.
    let pid = Errno::result(unsafe { syscall2(nr::WAIT, target, &mut status as *mut i64 as u64) })?;
    Ok((pid, status))
}

/// Starts a thread at `entry(arg)` with sp = `stack_top`; returns its tid.
///
/// # Safety
/// `entry` must be a function taking one `u64` that never returns (it ends
/// with [`thread_exit`]), and `[.., stack_top)` must be memory nothing else
/// uses until the thread has exited. [`crate::thread::spawn`] does this.
pub unsafe fn thread_create(entry: u64, stack_top: u64, arg: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    Errno::result(unsafe { syscall3(nr::THREAD_CREATE, entry, stack_top, arg) })
}

/// Ends the calling thread with `code` (its joiner sees it).
pub fn thread_exit(code: i32) -> ! {
    // SAFETY: THREAD_EXIT does not return.
    unsafe { syscall1(nr::THREAD_EXIT, code as i64 as u64) };
    unreachable!("THREAD_EXIT returned")
}

/// Waits for thread `tid` to exit; returns its exit code.
pub fn join(tid: u64) -> Result<i32, Errno> {
    // SAFETY: JOIN touches no user memory.
    Errno::result(unsafe { syscall1(nr::JOIN, tid) }).map(|code| code as i32)
}

/// Gives up the CPU.
pub fn yield_now() {
    // SAFETY: YIELD touches no user memory.
    unsafe { syscall0(nr::YIELD) };
}

/// Sleeps for `ns` nanoseconds.
pub fn sleep_ns(ns: u64) -> Result<u64, Errno> {
    // SAFETY: SLEEP touches no user memory.
    Errno::result(unsafe { syscall1(nr::SLEEP, ns) })
}

/// Sleeps for `ms` milliseconds.
pub fn sleep_ms(ms: u64) -> Result<u64, Errno> {
    sleep_ns(ms.saturating_mul(1_000_000))
}

/// Pins the calling thread to `cpu`, or lets it run anywhere (`None`).
pub fn set_affinity(cpu: Option<u64>) -> Result<u64, Errno> {
    // SAFETY: SET_AFFINITY touches no user memory.
    Errno::result(unsafe { syscall1(nr::SET_AFFINITY, cpu.unwrap_or(u64::MAX)) })
}

/// The CPU the calling thread runs on.
pub fn getcpu() -> u64 {
    // SAFETY: GETCPU touches no user memory.
    unsafe { syscall0(nr::GETCPU) }
}

/// Reads kernel statistics `which` (`abi::stats`) into `buf`; returns the
/// number of words written.
pub fn stats(which: u64, buf: &mut [u64]) -> Result<u64, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` words into `buf`.
    Errno::result(unsafe { syscall3(nr::STATS, which, buf.as_mut_ptr() as u64, buf.len() as u64) })
}

/// Reads a one-word statistic (`stats::BAD_SYSCALLS`, `stats::PAGE_FAULTS`).
pub fn stat(which: u64) -> Result<u64, Errno> {
    let mut word = [0u64];
    stats(which, &mut word)?;
    Ok(word[0])
}

/// Creates an IPC endpoint; returns its id.
pub fn ep_create() -> Result<u64, Errno> {
    // SAFETY: EP_CREATE touches no user memory.
    Errno::result(unsafe { syscall0(nr::EP_CREATE) })
}

/// Sends `msg` to endpoint `ep` and waits for the reply.
pub fn ep_call(ep: u64, msg: Msg) -> Result<Msg, Errno> {
    let [status, r0, r1, r2, r3] =
        // SAFETY: EP_CALL touches no user memory; the words travel in registers.
        unsafe { syscall_ret5(nr::EP_CALL, ep, msg[0], msg[1], msg[2], msg[3]) };
    Errno::result(status).map(|_| [r0, r1, r2, r3])
}

/// Waits for a message on `ep`; returns the reply token and the message.
pub fn ep_recv(ep: u64) -> Result<(u64, Msg), Errno> {
    // SAFETY: EP_RECV touches no user memory; the words travel in registers.
    let [token, m0, m1, m2, m3] = unsafe { syscall_ret5(nr::EP_RECV, ep, 0, 0, 0, 0) };
    Errno::result(token).map(|token| (token, [m0, m1, m2, m3]))
}

/// Answers the call that `token` (from [`ep_recv`]) stands for.
pub fn ep_reply(token: u64, msg: Msg) -> Result<u64, Errno> {
    // SAFETY: EP_REPLY touches no user memory.
    Errno::result(unsafe { syscall5(nr::EP_REPLY, token, msg[0], msg[1], msg[2], msg[3]) })
}

/// Sleeps while `*word == expected`, until woken or `timeout_ns` passes
/// (0: no timeout).
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: u64) -> Result<u64, Errno> {
    // SAFETY: the kernel only reads `word`, a valid aligned u32.
    Errno::result(unsafe { syscall3(nr::FUTEX_WAIT, word.as_ptr() as u64, u64::from(expected), timeout_ns) })
}

/// Wakes up to `count` threads waiting on `word`; returns how many woke.
pub fn futex_wake(word: &AtomicU32, count: u64) -> Result<u64, Errno> {
    // SAFETY: FUTEX_WAKE uses the address as a key only.
    Errno::result(unsafe { syscall2(nr::FUTEX_WAKE, word.as_ptr() as u64, count) })
}

/// This process's id.
pub fn getpid() -> u64 {
    // SAFETY: GETPID touches no user memory.
    unsafe { syscall0(nr::GETPID) }
}

/// Ends process `pid`.
pub fn kill(pid: u64) -> Result<u64, Errno> {
    // SAFETY: KILL touches no memory of this process (unless `pid` is this
    // process, which then ends: nothing is used after).
    Errno::result(unsafe { syscall1(nr::KILL, pid) })
}

/// Nanoseconds since boot.
pub fn time_ns() -> u64 {
    // SAFETY: TIME_NS touches no user memory.
    unsafe { syscall0(nr::TIME_NS) }
}

/// Starts an asynchronous copy of `len` bytes from `src` to `dst` (both in
/// this process) by a kernel worker on `cpu` (`None`: any CPU); returns its
/// ticket for [`copy_wait`].
///
/// # Safety
/// Until [`copy_wait`] has returned for the ticket (or the process ends),
/// `[dst, dst + len)` may change at any moment: no Rust reference may cover
/// it, and nothing may rely on its contents.
pub unsafe fn copy_async(dst: u64, src: u64, len: u64, cpu: Option<u64>) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller; the kernel checks every access
    // against this process's mappings.
    Errno::result(unsafe { syscall4(nr::COPY_ASYNC, dst, src, len, cpu.unwrap_or(u64::MAX)) })
}

/// Starts a watch: a kernel worker on `cpu` (`None`: any CPU) reads the
/// word at `src` over and over for `ns` nanoseconds and logs what it reads
/// into the `log_len` bytes at `log` (layout in `abi::copy`); returns its
/// ticket for [`copy_wait`], whose result is the number of samples.
///
/// # Safety
/// Until [`copy_wait`] has returned for the ticket (or the process ends),
/// the log may change at any moment: it may be read only with atomic or
/// volatile loads, and no Rust reference may cover it otherwise.
pub unsafe fn watch_async(log: u64, src: u64, log_len: u64, cpu: Option<u64>, ns: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller; the kernel only reads `src`.
    Errno::result(unsafe { syscall5(nr::WATCH_ASYNC, log, src, log_len, cpu.unwrap_or(u64::MAX), ns) })
}

/// Waits for the job of `ticket` to end; returns its result (bytes copied,
/// or samples watched). The ticket is used up.
pub fn copy_wait(ticket: u64) -> Result<u64, Errno> {
    // SAFETY: COPY_WAIT touches no user memory.
    Errno::result(unsafe { syscall2(nr::COPY_WAIT, ticket, 0) })
}

/// Like [`copy_wait`], but `Err(EAGAIN)` at once while the job runs (the
/// ticket stays valid then).
pub fn copy_poll(ticket: u64) -> Result<u64, Errno> {
    // SAFETY: COPY_WAIT touches no user memory.
    Errno::result(unsafe { syscall2(nr::COPY_WAIT, ticket, abi::copy::NOWAIT) })
}

/// Binds device `dev` (`abi::device`) to this process's address space.
pub fn dev_bind(dev: u64) -> Result<u64, Errno> {
    // SAFETY: DEV_BIND touches no user memory.
    Errno::result(unsafe { syscall1(nr::DEV_BIND, dev) })
}

/// Ends this process's binding of device `dev` (its jobs end).
pub fn dev_unbind(dev: u64) -> Result<u64, Errno> {
    // SAFETY: DEV_UNBIND touches no user memory.
    Errno::result(unsafe { syscall1(nr::DEV_UNBIND, dev) })
}

/// Queues `job` (`abi::device`'s layout) on device `dev`; returns its id
/// for [`dev_wait`].
///
/// # Safety
/// Until [`dev_wait`] has returned for the job (or the binding ends), the
/// memory the job writes (a copy's or fill's destination, a watch's count)
/// may change at any moment: no Rust reference may cover it, and nothing
/// may rely on its contents.
pub unsafe fn dev_submit(dev: u64, job: &[u64; abi::device::JOB_WORDS]) -> Result<u64, Errno> {
    // SAFETY: the kernel reads the job's words; what the device does to
    // this process's memory is the caller's to allow (above).
    Errno::result(unsafe { syscall2(nr::DEV_SUBMIT, dev, job.as_ptr() as u64) })
}

/// Waits for job `id` of device `dev` to end (with `abi::device::NOWAIT`:
/// EAGAIN while it runs; with `abi::device::STOP`: a watch stops first);
/// returns its result, and writes its report to `report` if given. The id
/// is used up once the result (or EFAULT for the report) comes back.
pub fn dev_wait(
    dev: u64,
    id: u64,
    report: Option<&mut [u64; abi::device::REPORT_WORDS]>,
    flags: u64,
) -> Result<u64, Errno> {
    let at = report.map_or(0, |r| r.as_mut_ptr() as u64);
    // SAFETY: the kernel writes at most the report's words to `at`, a
    // buffer borrowed mutably for the call (or nowhere).
    Errno::result(unsafe { syscall4(nr::DEV_WAIT, dev, id, at, flags) })
}
