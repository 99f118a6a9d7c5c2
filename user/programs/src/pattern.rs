//! Word patterns that tell copies of memory apart: word `i` of the pattern
//! with `seed` is different for every (seed, i) that the programs use.

/// Word `i` of pattern `seed`.
pub fn word(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

pub fn fill(words: &mut [u64], seed: u64) {
    for (i, w) in words.iter_mut().enumerate() {
        *w = word(seed, i);
    }
}

/// A word that does not hold its pattern value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub index: usize,
    pub expected: u64,
    pub seen: u64,
}

impl core::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "word {}: expected {:#x}, saw {:#x}", self.index, self.expected, self.seen)
    }
}

/// The first word of `words` that differs from pattern `seed`.
pub fn check(words: &[u64], seed: u64) -> Result<(), Mismatch> {
    match words.iter().enumerate().find(|&(i, &w)| w != word(seed, i)) {
        Some((index, &seen)) => Err(Mismatch { index, expected: word(seed, index), seen }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finds_the_first_changed_word() {
        let mut w = [0u64; 8];
        fill(&mut w, 0xA);
        assert_eq!(check(&w, 0xA), Ok(()));
        w[5] = 0;
        assert_eq!(check(&w, 0xA), Err(Mismatch { index: 5, expected: word(0xA, 5), seen: 0 }));
        assert!(check(&w, 0xB).is_err());
    }
}
