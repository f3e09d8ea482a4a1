//! Rate-limited logging of repeating errors.
//!
//! An error that repeats (Kinesis down, a checkpoint that cannot be written,
//! CloudWatch refusing metrics) is logged the first time, then at most once
//! per window; the line that is logged says how many like it were held back
//! since the previous one. Nothing here is on the per-line data path: callers
//! use it on error paths only. Written here rather than taken from a crate:
//! the tracing ecosystem has no maintained rate limiter that reports what it
//! suppressed, and this is twenty lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default window: one line per kind of error per minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One kind of repeating message.
#[derive(Debug)]
pub struct Repeats {
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_logged: Option<Instant>,
    held_back: u64,
}

impl Default for Repeats {
    fn default() -> Self {
        Repeats::new(WINDOW)
    }
}

impl Repeats {
    /// At most one message per `window`.
    pub fn new(window: Duration) -> Repeats {
        Repeats {
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// Count one occurrence. `Some(suffix)` when it should be logged, with a
    /// suffix (empty, or " (N more like this in the last 73s)") to append.
    pub fn check(&self) -> Option<String> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Option<String> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.last_logged {
            Some(t) if now.saturating_duration_since(t) < self.window => {
                s.held_back += 1;
                None
            }
            last => {
                let suffix = match (s.held_back, last) {
                    (0, _) | (_, None) => String::new(),
                    (n, Some(t)) => format!(
                        " ({n} more like this in the last {}s)",
                        now.saturating_duration_since(t).as_secs()
                    ),
                };
                s.held_back = 0;
                s.last_logged = Some(now);
                Some(suffix)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_logged_then_one_per_window_with_the_count() {
        let r = Repeats::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(r.check_at(t0), Some(String::new()));
        for i in 1..=5 {
            assert_eq!(r.check_at(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(
            r.check_at(t0 + Duration::from_secs(61)),
            Some(" (5 more like this in the last 61s)".into())
        );
        assert_eq!(r.check_at(t0 + Duration::from_secs(62)), None);
        // Quiet for long: the next one is logged, mentioning the one held back.
        assert_eq!(
            r.check_at(t0 + Duration::from_secs(500)),
            Some(" (1 more like this in the last 439s)".into())
        );
        assert_eq!(
            r.check_at(t0 + Duration::from_secs(1000)),
            Some(String::new())
        );
    }
}
