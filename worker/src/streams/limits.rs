//! Per-shard throughput limits (Kinesis: 1 MiB/s or 1,000 records/s in,
//! 2 MiB/s out), as token buckets that hold one second of budget.

use std::time::Instant;

/// Limits per shard; 0 switches a limit off.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub write_bytes: u64,
    pub write_records: u64,
    pub read_bytes: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            write_bytes: 1024 * 1024,
            write_records: 1000,
            read_bytes: 2 * 1024 * 1024,
        }
    }
}

impl StreamLimits {
    pub fn off() -> Self {
        Self {
            write_bytes: 0,
            write_records: 0,
            read_bytes: 0,
        }
    }
}

/// A token bucket refilled at `rate` per second, holding at most `rate`.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: u64) -> Self {
        Self {
            rate: rate as f64,
            tokens: rate as f64,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
    }

    pub fn unlimited(&self) -> bool {
        self.rate <= 0.0
    }

    /// Takes `n` tokens if they are there.
    pub fn try_take(&mut self, n: u64) -> bool {
        if self.unlimited() {
            return true;
        }
        self.refill();
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// Whether any budget is left (reads: checked before, charged after).
    pub fn has_budget(&mut self) -> bool {
        if self.unlimited() {
            return true;
        }
        self.refill();
        self.tokens > 0.0
    }

    /// Charges `n` tokens, possibly going into debt.
    pub fn charge(&mut self, n: u64) {
        if !self.unlimited() {
            self.refill();
            self.tokens -= n as f64;
        }
    }
}

/// The write side: a record must fit both the byte and the record budget.
#[derive(Debug)]
pub struct WriteBudget {
    bytes: Bucket,
    records: Bucket,
}

impl WriteBudget {
    pub fn new(l: &StreamLimits) -> Self {
        Self {
            bytes: Bucket::new(l.write_bytes),
            records: Bucket::new(l.write_records),
        }
    }

    pub fn try_take(&mut self, bytes: u64) -> bool {
        if !self.records.try_take(1) {
            return false;
        }
        if !self.bytes.try_take(bytes) {
            // Give the record token back.
            self.records.charge(0);
            self.records.tokens += 1.0;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refuse_past_the_budget() {
        let mut w = WriteBudget::new(&StreamLimits {
            write_bytes: 1000,
            write_records: 3,
            read_bytes: 0,
        });
        assert!(w.try_take(10));
        assert!(w.try_take(10));
        assert!(w.try_take(10));
        assert!(!w.try_take(10), "fourth record in the same instant");
        let mut w = WriteBudget::new(&StreamLimits::default());
        assert!(
            !w.try_take(2 * 1024 * 1024),
            "bigger than a second of bytes"
        );
        let mut r = Bucket::new(0);
        assert!(r.has_budget() && r.try_take(u64::MAX));
    }
}
