//! The reverse map's families: each user address space belongs to one
//! (a spawned or exec'd process's is new, a fork child's is its parent's;
//! `AddressSpace::anon`), and this registry finds a family's live address
//! spaces. With the per-frame records of [`super::rmap`] that answers
//! reclaim's question: which (mm, VA) pairs map this frame ([`mappers`]).

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::hw::Hw;
use super::pagetable::desc_pa;
use super::phys::{rmap, KernelMem};
use super::rmap::MAX_FAMILY;
use super::user::UserMm;

/// The live address spaces, keyed by (family, mm id). Weak references: an
/// address space leaves when it is dropped ([`unregister`]), and one being
/// dropped no longer upgrades. Empty, it holds no heap memory (see
/// [`unregister`]), so leak tests see no difference once every process is
/// gone.
static FAMILIES: spin::Mutex<BTreeMap<(u64, u64), Weak<UserMm>>> = spin::Mutex::new(BTreeMap::new());

static NEXT_FAMILY: AtomicU64 = AtomicU64::new(1);

/// A family id never handed out before (until 2^28 families, after which
/// ids are reused: a record naming a reused family is still checked
/// against the page tables, so it is only a wasted look).
pub fn new_family() -> u64 {
    NEXT_FAMILY.fetch_add(1, Ordering::Relaxed) % MAX_FAMILY + 1
}

/// `mm` (whose id is `id`) joins family `anon`.
pub fn register(anon: u64, id: u64, mm: &Arc<UserMm>) {
    FAMILIES.lock().insert((anon, id), Arc::downgrade(mm));
}

/// Address space `id` of family `anon` is going away.
pub fn unregister(anon: u64, id: u64) {
    let mut f = FAMILIES.lock();
    let gone = f.remove(&(anon, id));
    // An emptied map keeps its root node: replaced by a new one, which
    // holds none.
    let emptied = if f.is_empty() { core::mem::take(&mut *f) } else { BTreeMap::new() };
    drop(f);
    // Both dropped outside the lock (they free heap memory).
    drop((gone, emptied));
}

/// The live address spaces of family `anon`.
pub fn members(anon: u64) -> Vec<Arc<UserMm>> {
    let f = FAMILIES.lock();
    // Nothing is dropped under the lock: a failed upgrade drops nothing,
    // and the strong references leave with the caller.
    f.range((anon, 0)..=(anon, u64::MAX)).filter_map(|(_, w)| w.upgrade()).collect()
}

/// The (address space, VA) pairs that map frame `pa` now, as the page
/// tables say (each looked at under its lock, serving IPIs meanwhile);
/// empty for a frame with no record (page tables, kernel memory, program
/// images, free frames). Others may change them as soon as this returns:
/// reclaim's unmap checks again under the lock.
pub fn mappers(pa: u64) -> Vec<(Arc<UserMm>, u64)> {
    let Some((anon, va)) = rmap().get(pa) else { return Vec::new() };
    let mut found = members(anon);
    found.retain(|mm| mm.with_aspace_polling(&Hw, |a| a.translate(va, &KernelMem).map(desc_pa) == Some(pa)));
    found.into_iter().map(|mm| (mm, va)).collect()
}
