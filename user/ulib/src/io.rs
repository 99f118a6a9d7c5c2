//! `print!`/`println!` over WRITE: each call formats into a stack buffer and
//! writes it with one system call, so lines from different processes or
//! threads do not interleave (unless a line is longer than the buffer).

use core::fmt::{self, Write};

/// Bytes formatted per WRITE. A longer output is written in several pieces.
pub const LINE_BUF: usize = 256;

/// Formats into a fixed buffer and hands full buffers to `sink`.
struct LineBuf<F: FnMut(&[u8])> {
    buf: [u8; LINE_BUF],
    len: usize,
    sink: F,
}

impl<F: FnMut(&[u8])> LineBuf<F> {
    fn new(sink: F) -> Self {
        LineBuf { buf: [0; LINE_BUF], len: 0, sink }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<F: FnMut(&[u8])> Write for LineBuf<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            if self.len == LINE_BUF {
                self.flush();
            }
            let n = rest.len().min(LINE_BUF - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&rest[..n]);
            self.len += n;
            rest = &rest[n..];
        }
        Ok(())
    }
}

/// Writes all of `bytes` to the console, retrying short writes; errors are
/// dropped (there is nowhere to report them).
fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match crate::sys::write(bytes) {
            Ok(n) if n > 0 => bytes = &bytes[(n as usize).min(bytes.len())..],
            _ => return,
        }
    }
}

/// The implementation of [`print!`](crate::print) and
/// [`println!`](crate::println).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new(write_all);
    let _ = line.write_fmt(args);
    line.flush();
}

/// Prints to the console with one WRITE per call (up to [`LINE_BUF`] bytes).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(format_args!($($arg)*)) };
}

/// [`print!`] with a newline; the line and its newline go in one WRITE.
#[macro_export]
macro_rules! println {
    () => { $crate::io::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn pieces(args: fmt::Arguments<'_>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut line = LineBuf::new(|b: &[u8]| out.push(b.to_vec()));
        line.write_fmt(args).unwrap();
        line.flush();
        out
    }

    #[test]
    fn a_short_line_is_one_write() {
        assert_eq!(pieces(format_args!("pid {} cpu {}\n", 3, 1)), [b"pid 3 cpu 1\n".to_vec()]);
    }

    #[test]
    fn a_long_line_is_split_at_the_buffer_size() {
        let long = "x".repeat(LINE_BUF + 10);
        let out = pieces(format_args!("{long}"));
        assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [LINE_BUF, 10]);
    }

    #[test]
    fn nothing_printed_is_no_write() {
        assert!(pieces(format_args!("")).is_empty());
    }
}
