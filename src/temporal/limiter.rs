//! A client-side rate limit: calls are spaced `1 / max_rps` apart (0 = unlimited).

use std::time::Duration;
use tokio::time::Instant;

pub struct RateLimiter {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(max_rps: u32) -> RateLimiter {
        RateLimiter {
            interval: (max_rps > 0).then(|| Duration::from_secs_f64(1.0 / max_rps as f64)),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_at_the_configured_rate() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        for _ in 0..11 {
            limiter.acquire().await;
        }
        // The first call is immediate, the next ten are 100 ms apart.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
