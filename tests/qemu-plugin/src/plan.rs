//! What to instrument in a translation block, and what each callback does
//! when it runs.
//!
//! Counting instructions one callback per instruction is exact but slow;
//! by default ([`Mode::Block`]) a block's instructions are counted by one
//! callback when the block starts. A region marker in the middle of a block
//! splits it: the block's callback counts the instructions before the
//! marker, and the marker's own callback counts the marker and the rest, so
//! a region's count starts and stops at the markers themselves. TLBIs and
//! DSBs get a callback each. Every callback is one [`Action`], packed into
//! the callback's user-data word.
//!
//! What block counting cannot see: an instruction that takes a synchronous
//! exception (a page fault on a load or store) is counted with the rest of
//! its block, though those did not run; and it is counted again when it is
//! re-executed after the handler. [`Mode::Each`] counts each instruction
//! when it starts, so only the second of these remains (one instruction per
//! fault).

use crate::counts::State;
use crate::decode::{classify, Class};

/// How instructions are counted (plugin argument `count=tb|insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One callback per translation block (split at markers).
    Block,
    /// One callback per instruction.
    Each,
}

/// What one callback does: count `count` instructions (this one and those
/// after it up to the next callback of the block), and what this
/// instruction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    pub count: u32,
    pub class: Class,
}

impl Action {
    pub fn pack(self) -> u64 {
        let (tag, slot) = match self.class {
            Class::Other => (0, 0),
            Class::Tlbi(s) => (1, u64::from(s)),
            Class::Dsb(s) => (2, u64::from(s)),
            Class::Begin => (3, 0),
            Class::End => (4, 0),
        };
        tag << 48 | slot << 32 | u64::from(self.count)
    }

    pub fn unpack(word: u64) -> Action {
        let slot = (word >> 32) as u16;
        let class = match word >> 48 {
            1 => Class::Tlbi(slot),
            2 => Class::Dsb(slot as u8),
            3 => Class::Begin,
            4 => Class::End,
            _ => Class::Other,
        };
        Action { count: word as u32, class }
    }

    /// Runs on `vcpu` just before the instruction executes.
    pub fn execute(self, state: &State, vcpu: u32) {
        let Some(v) = state.vcpu(vcpu) else { return };
        let n = u64::from(self.count);
        match self.class {
            // The marker itself is outside the region it begins...
            Class::Begin => {
                v.insns(1);
                state.begin(vcpu);
                v.insns(n.saturating_sub(1));
            }
            // ... and outside the region it ends.
            Class::End => {
                state.end(vcpu);
                v.insns(n);
            }
            Class::Tlbi(slot) => {
                v.insns(n);
                v.tlbi(slot);
            }
            Class::Dsb(slot) => {
                v.insns(n);
                v.dsb(slot);
            }
            Class::Other => v.insns(n),
        }
    }
}

/// The callbacks of one block: `prefix` instructions counted when the
/// block starts (none registered if 0), then an action per instrumented
/// instruction (by index in the block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub prefix: u32,
    pub actions: Vec<(usize, Action)>,
}

/// The plan for a block of instruction `words`.
pub fn plan(words: &[u32], mode: Mode) -> Plan {
    let classes: Vec<Class> = words.iter().map(|&w| classify(w)).collect();
    let splits_at = |c: Class| mode == Mode::Each || matches!(c, Class::Begin | Class::End);
    let splits: Vec<usize> = (0..words.len()).filter(|&i| splits_at(classes[i])).collect();
    let first = splits.first().copied().unwrap_or(words.len());
    let mut actions = Vec::new();
    for (i, &class) in classes.iter().enumerate() {
        let count = match splits.binary_search(&i) {
            Ok(k) => splits.get(k + 1).copied().unwrap_or(words.len()) - i,
            Err(_) if class == Class::Other => continue,
            Err(_) => 0,
        };
        actions.push((i, Action { count: count as u32, class }));
    }
    Plan { prefix: first as u32, actions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::marker;

    const NOP: u32 = 0xd503_201f;
    const TLBI_VAE1IS: u32 = 0xd508_8320;
    const DSB_ISH: u32 = 0xd503_3b9f;

    #[test]
    fn actions_pack_into_one_word() {
        for class in [Class::Other, Class::Tlbi(2047), Class::Dsb(19), Class::Begin, Class::End] {
            let a = Action { count: 4_000_000_000, class };
            assert_eq!(Action::unpack(a.pack()), a);
        }
    }

    #[test]
    fn a_block_without_markers_is_one_count() {
        let p = plan(&[NOP, TLBI_VAE1IS, NOP, DSB_ISH, NOP], Mode::Block);
        assert_eq!(p.prefix, 5);
        let classes: Vec<_> = p.actions.iter().map(|(i, a)| (*i, a.count)).collect();
        assert_eq!(classes, [(1, 0), (3, 0)], "TLBI and DSB counted, no instructions");
    }

    #[test]
    fn markers_split_the_block() {
        let begin = marker::hint(marker::BEGIN);
        let end = marker::hint(marker::END);
        let p = plan(&[NOP, NOP, begin, NOP, TLBI_VAE1IS, end, NOP], Mode::Block);
        assert_eq!(p.prefix, 2);
        let counts: Vec<_> = p.actions.iter().map(|(i, a)| (*i, a.count)).collect();
        assert_eq!(counts, [(2, 3), (4, 0), (5, 2)]);
        let each = plan(&[NOP, begin, TLBI_VAE1IS], Mode::Each);
        assert_eq!(each.prefix, 0);
        assert!(each.actions.iter().all(|(_, a)| a.count == 1));
        assert_eq!(each.actions.len(), 3);
    }

    /// Runs `blocks` (each executed whole) under both modes and checks the
    /// counts against counting instruction by instruction.
    #[test]
    fn both_modes_count_the_same() {
        let begin = marker::hint(marker::BEGIN);
        let end = marker::hint(marker::END);
        let blocks: [&[u32]; 4] =
            [&[NOP, NOP, begin, NOP], &[TLBI_VAE1IS, NOP, DSB_ISH], &[NOP, end, NOP, begin], &[end, NOP]];
        for mode in [Mode::Block, Mode::Each] {
            let s = State::new(1);
            for block in blocks {
                let p = plan(block, mode);
                s.vcpu(0).unwrap().insns(u64::from(p.prefix));
                for (_, a) in p.actions {
                    a.execute(&s, 0);
                }
            }
            let total = &s.snapshot()[0];
            assert_eq!(total.insns, 13, "{mode:?}");
            let (regions, unpaired) = s.regions_at_exit();
            assert_eq!(unpaired, 0);
            let inside: Vec<u64> = regions.iter().map(|r| r.per_vcpu[0].insns).collect();
            // NOP | TLBI NOP DSB | NOP  and  (nothing)
            assert_eq!(inside, [5, 0], "{mode:?}");
            assert_eq!(regions[0].per_vcpu[0].dsb_completing, 1);
        }
    }
}
