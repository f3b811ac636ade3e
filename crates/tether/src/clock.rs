//! The server's clock, injected so tests of time-driven behaviour above the
//! engine can substitute their own. A clock answers two questions: what time
//! it is ([`Clock::now`]) and when a given time has come
//! ([`Clock::sleep_until`], which the deadline timer waits on).
//!
//! Two implementations:
//! - [`SystemClock`]: wall-clock milliseconds; waiting is a tokio timer.
//! - [`ManualClock`]: time moves only when its owner calls
//!   [`ManualClock::advance`], and moving it wakes everything waiting on it.
//!   The in-process test harness uses it so deadline tests advance time by
//!   exactly the amount they mean instead of sleeping.
//!
//! Why not tokio's paused time (`tokio::time::pause`): a paused runtime
//! auto-advances its clock to the next timer whenever it has nothing to run.
//! With a real HTTP server and a real SQLite journal that is most of the
//! time: while a test awaits an answer on a socket, or the journal's OS
//! thread is committing, the runtime is idle and jumps straight to the
//! deadline timer's wake-up, so a session would end `idle_timeout` in the
//! middle of the heartbeat that was meant to keep it alive, and client
//! request timeouts would fire at once. Time that moves only on request has
//! no such races, and it keeps the server's clock apart from tokio's, which
//! still drives keep-alives and I/O timeouts in real time.

use std::future::Future;
use std::pin::Pin;
use tether_engine::Millis;
use tokio::sync::watch;

/// A future that resolves once a clock has reached some time.
pub type Wakeup = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds.
    fn now(&self) -> Millis;

    /// Resolves once [`Clock::now`] has reached `at` (at once if it has).
    /// Callers re-read the clock afterwards, so resolving early is harmless.
    fn sleep_until(&self, at: Millis) -> Wakeup;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
    }

    fn sleep_until(&self, at: Millis) -> Wakeup {
        let wait = (at - self.now()).max(0) as u64;
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// A clock that stands still until told to move (see the module doc).
pub struct ManualClock {
    /// The current time; its receivers are the sleepers.
    now: watch::Sender<Millis>,
}

impl ManualClock {
    /// A clock stopped at `start` (Unix milliseconds).
    pub fn new(start: Millis) -> ManualClock {
        ManualClock { now: watch::Sender::new(start) }
    }

    /// A clock stopped at the current wall-clock time, so timestamps look
    /// real and tokens minted with wall-clock expiry stay valid.
    pub fn starting_now() -> ManualClock {
        ManualClock::new(SystemClock.now())
    }

    /// Moves time forward by `by` milliseconds and wakes whatever was
    /// waiting for a time now reached. Returns the new time.
    pub fn advance(&self, by: Millis) -> Millis {
        assert!(by >= 0, "a clock only moves forward (asked to move by {by} ms)");
        self.now.send_modify(|now| *now += by);
        self.now()
    }

    /// Moves time forward to `at`; a time already passed leaves it where it is.
    pub fn advance_to(&self, at: Millis) -> Millis {
        self.now.send_if_modified(|now| {
            let moved = at > *now;
            *now = (*now).max(at);
            moved
        });
        self.now()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Millis) -> Wakeup {
        let mut moved = self.now.subscribe();
        Box::pin(async move {
            // An error means the clock is gone: time will never reach `at`.
            if moved.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_sleeper_wakes_when_the_manual_clock_reaches_its_time_not_before() {
        let clock = ManualClock::new(1_000);
        let mut sleeper = clock.sleep_until(1_500);
        clock.advance(499);
        assert!((&mut sleeper).now_or_never().is_none(), "woke at 1499");
        clock.advance(1);
        assert!(sleeper.now_or_never().is_some(), "still asleep at 1500");
        assert_eq!(clock.now(), 1_500);
    }

    #[test]
    fn a_time_already_reached_resolves_at_once_and_advance_to_never_goes_back() {
        let clock = ManualClock::new(2_000);
        assert!(clock.sleep_until(1_000).now_or_never().is_some(), "1000 is already past");
        assert_eq!(clock.advance_to(1_500), 2_000);
        assert_eq!(clock.advance_to(2_500), 2_500);
    }
}
