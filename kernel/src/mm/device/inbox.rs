//! A device's inbox: the invalidations CPUs posted and it has not handled
//! yet, each with a ticket (the count of posts so far), so a CPU knows
//! which handling covers what it posted.

use crate::mm::space::Invalidation;

/// Invalidations an inbox keeps one by one. Each CPU has at most one
/// outstanding at a time (it waits for the acknowledgement before its
/// operation goes on), so 16 cover every CPU; only `mmu.notifier=late`,
/// which nobody waits for, can post more before the device looks.
pub const INBOX: usize = 16;

const NONE: Invalidation = Invalidation { asid: 0, range: None, release: false };

/// What the device has been told and not handled. Past [`INBOX`] entries
/// the inbox collapses to "drop everything" (and "a release came" if one
/// was among them), which covers whatever it held.
#[derive(Clone, Debug)]
pub struct Inbox {
    ring: [Invalidation; INBOX],
    len: usize,
    /// Overflowed: drop every cached entry.
    all: bool,
    /// Overflowed with a release among what it dropped.
    release_any: bool,
    /// Posts so far (the last ticket handed out).
    posted: u64,
    /// Posts taken by [`Self::take`] so far.
    taken: u64,
}

/// What [`Inbox::take`] took: the invalidations, or everything.
#[derive(Clone, Debug)]
pub struct Taken {
    ring: [Invalidation; INBOX],
    len: usize,
    /// Drop every cached entry (the inbox overflowed).
    pub all: bool,
    /// With `all`: a release was among what overflowed.
    pub release_any: bool,
    /// The posts covered: tickets `from + 1 ..= upto`.
    pub from: u64,
    pub upto: u64,
}

impl Taken {
    pub fn invalidations(&self) -> &[Invalidation] {
        &self.ring[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.upto == self.from
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Inbox {
    pub const fn new() -> Self {
        Inbox { ring: [NONE; INBOX], len: 0, all: false, release_any: false, posted: 0, taken: 0 }
    }

    /// Adds `inv`; returns its ticket. Once the device has handled that
    /// ticket (its done count reached it), no cached entry `inv` names is
    /// left.
    pub fn post(&mut self, inv: Invalidation) -> u64 {
        self.posted += 1;
        if self.all {
            self.release_any |= inv.release;
        } else if self.len < INBOX {
            self.ring[self.len] = inv;
            self.len += 1;
        } else {
            self.all = true;
            self.release_any = inv.release || self.ring.iter().any(|i| i.release);
            self.len = 0;
        }
        self.posted
    }

    /// Takes everything posted so far.
    pub fn take(&mut self) -> Taken {
        let t = Taken {
            ring: self.ring,
            len: self.len,
            all: self.all,
            release_any: self.release_any,
            from: self.taken,
            upto: self.posted,
        };
        self.len = 0;
        self.all = false;
        self.release_any = false;
        self.taken = self.posted;
        t
    }

    /// Posts not taken yet.
    pub fn pending(&self) -> u64 {
        self.posted - self.taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(asid: u16, start: u64, release: bool) -> Invalidation {
        Invalidation { asid, range: Some((start, start + 0x1000)), release }
    }

    #[test]
    fn tickets_count_posts_and_a_take_covers_them_all() {
        let mut b = Inbox::new();
        assert!(b.take().is_empty());
        assert_eq!(b.post(inv(1, 0x1000, false)), 1);
        assert_eq!(b.post(inv(1, 0x2000, false)), 2);
        assert_eq!(b.pending(), 2);
        let t = b.take();
        assert_eq!((t.from, t.upto, t.all), (0, 2, false));
        assert_eq!(t.invalidations(), [inv(1, 0x1000, false), inv(1, 0x2000, false)]);
        assert_eq!(b.pending(), 0);
        assert_eq!(b.post(inv(2, 0, false)), 3);
        let t = b.take();
        assert_eq!((t.from, t.upto), (2, 3));
        assert_eq!(t.invalidations().len(), 1);
    }

    #[test]
    fn an_overflow_becomes_drop_everything_and_keeps_a_release() {
        let mut b = Inbox::new();
        b.post(inv(1, 0, true));
        for i in 1..INBOX as u64 {
            b.post(inv(1, i << 12, false));
        }
        assert!(!b.clone().take().all, "full, not over");
        b.post(inv(1, 0x99000, false));
        b.post(inv(3, 0, false));
        let t = b.take();
        assert!(t.all && t.release_any, "{t:?}");
        assert!(t.invalidations().is_empty());
        assert_eq!((t.from, t.upto), (0, INBOX as u64 + 2));
        // Back to one by one after the take.
        b.post(inv(1, 0, false));
        let t = b.take();
        assert!(!t.all && !t.release_any && t.invalidations().len() == 1);
    }

    #[test]
    fn a_release_after_the_overflow_is_kept_too() {
        let mut b = Inbox::new();
        for i in 0..=INBOX as u64 {
            b.post(inv(1, i << 12, false));
        }
        assert!(!b.clone().take().release_any);
        b.post(inv(1, 0, true));
        assert!(b.take().release_any);
    }
}
