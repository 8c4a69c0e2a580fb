//! Retry delays: exponential up to a cap, optionally with jitter so that many retriers
//! (upload workers, boxes behind one store) do not knock in step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, next: initial, jitter: false }
    }

    /// Each delay is drawn uniformly from [d/2, d] ("equal jitter"): never below half the
    /// nominal delay, so the back-off still backs off.
    pub fn with_jitter(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        if self.jitter { d.mul_f64(0.5 + 0.5 * unit_random()) } else { d }
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A uniform number in [0, 1) from the system's random source.
fn unit_random() -> f64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_the_nominal_delay() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10)).with_jitter();
        let mut nominal = Duration::from_millis(100);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} outside [{:?}, {nominal:?}]", nominal / 2);
            distinct.insert(d.as_nanos() * 1000 / nominal.as_nanos());
            nominal = (nominal * 2).min(Duration::from_secs(10));
        }
        assert!(distinct.len() > 1, "jitter varies the delays");
    }
}
