//! The console: the PL011 once it is set up, semihosting before that; the
//! `log` backend; and the only print macros in the kernel.

use core::fmt::{self, Write};
use spin::Mutex;

use crate::arch::cpu::{cpu_id, irq_restore, irq_save};

/// Serialises whole messages so lines from different CPUs do not interleave.
static PRINT_LOCK: Mutex<()> = Mutex::new(());

struct Sink;

impl Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !platform::uart::write_str(s) {
            platform::semihost::write_str(s);
        }
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    let daif = irq_save();
    {
        let _g = PRINT_LOCK.lock();
        let _ = Sink.write_fmt(args);
    }
    irq_restore(daif);
}

/// For the panic path: prints even if this CPU died holding the lock.
pub fn print_panic(args: fmt::Arguments) {
    // SAFETY: the panicking CPU may hold these locks; getting the message out
    // matters more than the (unlikely) interleaving with another CPU.
    unsafe {
        PRINT_LOCK.force_unlock();
        platform::uart::force_unlock();
    }
    let _ = Sink.write_fmt(args);
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            print(format_args!("[cpu{}] {:5} {}: {}\n", cpu_id(), r.level(), r.target(), r.args()));
        }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
