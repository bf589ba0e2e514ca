//! The seeded source of every choice the simulation makes.
//!
//! Only raw 64-bit words are taken from the generator (xoshiro256++, seeded through SplitMix64:
//! both fixed, published algorithms); ranges are reduced here. So the output for a seed depends
//! on those two algorithms and this file, not on how `rand` samples ranges (which a feature such
//! as `unbiased`, enabled anywhere in a build, would change).

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug)]
pub(crate) struct Dice(Xoshiro256PlusPlus);

impl Dice {
    pub(crate) fn new(seed: u64) -> Dice {
        Dice(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A number in `low..=high` (requires `low <= high < u64::MAX`), by multiply-and-shift: the
    /// bias is below `span / 2^64`, nothing a simulation can notice.
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high && high < u64::MAX);
        let span = u128::from(high - low + 1);
        low + ((u128::from(self.0.next_u64()) * span) >> 64) as u64
    }

    /// An index into a collection of `len > 0` items.
    pub(crate) fn index(&mut self, len: usize) -> usize {
        debug_assert!(len > 0);
        self.between(0, len as u64 - 1) as usize
    }

    /// One of `items` (not empty).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// True once in `n` times, on average.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.between(1, n) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::Dice;

    #[test]
    fn stays_in_range_and_reaches_both_ends() {
        let mut dice = Dice::new(7);
        let draws: Vec<u64> = (0..1000).map(|_| dice.between(3, 6)).collect();
        assert!(draws.iter().all(|d| (3..=6).contains(d)));
        assert!(draws.contains(&3) && draws.contains(&6));
        assert_eq!(dice.between(5, 5), 5);
    }

    #[test]
    fn same_seed_same_draws() {
        let (mut a, mut b) = (Dice::new(1), Dice::new(1));
        for _ in 0..100 {
            assert_eq!(a.between(0, 1_000_000), b.between(0, 1_000_000));
        }
    }
}
