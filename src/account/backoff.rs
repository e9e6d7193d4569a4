//! Reconnect delays: the schedule of DESIGN.md (1 s, 2 s, 5 s, 15 s, 60 s, then
//! 60 s) with symmetric jitter, so a fleet of accounts that lost the network
//! together does not come back in lockstep and hammer the server.

use std::time::Duration;

/// Where a connection attempt sits in the reconnect schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    steps: Vec<Duration>,
    jitter: f64,
    failures: usize,
}

impl Backoff {
    /// `steps` must be non-empty (config validation guarantees it); `jitter` is
    /// the relative spread, 0.2 meaning ±20 %.
    pub fn new(steps: Vec<Duration>, jitter: f64) -> Self {
        assert!(
            !steps.is_empty(),
            "backoff schedule must have at least one step"
        );
        Self {
            steps,
            jitter: jitter.clamp(0.0, 0.9),
            failures: 0,
        }
    }

    /// Failures since the last reset; the next attempt is number `failures + 1`.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// Records one more failure and returns how long to wait before the next
    /// attempt. `unit` is a uniform sample in [0, 1) that picks the jitter.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.steps[self.failures.min(self.steps.len() - 1)];
        self.failures += 1;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor)
    }

    /// Jumps to the last (longest) step: the server asked us to slow down
    /// (429), so the next attempts start at the top of the schedule.
    pub fn penalize(&mut self) {
        self.failures = self.failures.max(self.steps.len() - 1);
    }

    /// Back to the first step, after a connection that stayed up long enough.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A uniform sample in [0, 1) for jitter. Jitter needs spread, not
/// unpredictability, so the clock's nanoseconds mixed through a SplitMix64
/// round are enough and spare a dependency.
pub fn jitter_sample() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn follows_the_schedule_then_stays_at_the_last_step() {
        let mut b = Backoff::new(secs(&[1, 2, 5, 15, 60]), 0.0);
        let got: Vec<u64> = (0..7).map(|_| b.next_delay(0.5).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 5, 15, 60, 60, 60]);
        assert_eq!(b.failures(), 7);
    }

    #[test]
    fn jitter_stays_within_the_configured_spread() {
        let mut lo = Backoff::new(secs(&[10]), 0.2);
        let mut hi = Backoff::new(secs(&[10]), 0.2);
        assert_eq!(lo.next_delay(0.0), Duration::from_secs(8));
        let top = hi.next_delay(0.999_999);
        assert!(top > Duration::from_millis(11_990) && top <= Duration::from_secs(12));
    }

    #[test]
    fn reset_and_penalize_move_along_the_schedule() {
        let mut b = Backoff::new(secs(&[1, 2, 5]), 0.0);
        b.next_delay(0.5);
        b.next_delay(0.5);
        b.reset();
        assert_eq!(b.next_delay(0.5), Duration::from_secs(1));
        b.penalize();
        assert_eq!(b.next_delay(0.5), Duration::from_secs(5));
    }

    #[test]
    fn jitter_sample_is_a_unit_interval_value() {
        for _ in 0..1000 {
            let s = jitter_sample();
            assert!((0.0..1.0).contains(&s));
        }
    }
}
