//! The one small deterministic generator of the tests and benchmarks
//! (xorshift64*): the same inputs for the same seed on every run and
//! platform, with no dependency whose stream could change between versions.
//! (The bench crate's log generator keeps its own SplitMix64,
//! `bench/src/rng.rs`: its streams are part of recorded benchmark inputs.)

/// xorshift64*. The seed must not be 0 (the generator would stay at 0).
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n` > 0) by remainder: slightly biased, which
    /// synthetic inputs do not mind.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `(0, 1)`: never 0, so its logarithm is finite.
    pub fn open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.open_unit(), self.open_unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_units_in_range() {
        let (mut a, mut b, mut c) = (XorShift(7), XorShift(7), XorShift(9));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let u = c.unit();
            assert!((0.0..1.0).contains(&u));
            let o = c.open_unit();
            assert!(o > 0.0 && o < 1.0);
            assert!(c.below(10) < 10);
        }
    }
}
