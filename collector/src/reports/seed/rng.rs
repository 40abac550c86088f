//! A small deterministic random source (SplitMix64), so generated history is the same on every
//! machine and for every version of the `rand` crate, and each attempt's numbers depend only on
//! the seed and the attempt's identity (not on the order of generation).

/// SplitMix64 (Steele, Lea and Flood 2014).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` and the parts naming what it generates.
    pub fn for_parts(seed: u64, parts: &[&[u8]]) -> Rng {
        // FNV-1a over the parts, separated, then mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            for &b in *part {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut rng = Rng(seed ^ h);
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Log-normal with the given median and shape.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Poisson with mean `lambda` (Knuth's method; fine for the small means used here).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        let limit = (-lambda.min(50.0)).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.uniform();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_roughly_right() {
        let mut a = Rng::for_parts(7, &[b"agent", b"1"]);
        let mut b = Rng::for_parts(7, &[b"agent", b"1"]);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(
            Rng::for_parts(7, &[b"agent1"]).next_u64(),
            Rng::for_parts(7, &[b"agent", b"1"]).next_u64()
        );
        let n = 20_000;
        let mean = (0..n).map(|_| a.poisson(2.5) as f64).sum::<f64>() / f64::from(n);
        assert!((mean - 2.5).abs() < 0.1, "{mean}");
        let mean = (0..n).map(|_| a.normal()).sum::<f64>() / f64::from(n);
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
