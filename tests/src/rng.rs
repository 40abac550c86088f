//! A seeded pseudo-random generator for tests and benchmarks (xorshift64*): the same seed gives
//! the same values on every run and machine, and it needs no `rand`.

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators").
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`; a zero seed (which xorshift never leaves) becomes 1.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform-ish in `0..n` (modulo bias is irrelevant at test sizes). `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Log-uniform in `lo..hi` (truncated), the shape of latency-like samples.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        ((lo as f64) * ((hi as f64) / (lo as f64)).powf(self.unit())) as u64
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_runs_repeat_and_values_stay_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], Rng::new(8).next_u64(), "another seed, another sequence");
        for _ in 0..1000 {
            assert!((0.0..1.0).contains(&a.unit()));
            assert!(a.below(3) < 3);
            assert!((10..1000).contains(&a.log_uniform(10, 1000)));
        }
        assert_ne!(Rng::new(0).next_u64(), 0, "a zero seed still moves");
    }
}
