//! CPU: how long an app runs wasm, its `CpuPercent` share, and the budget
//! past which a spinning app is stopped.
//!
//! The engine's epoch advances every tick (see
//! [`CompartmentEngine`](crate::CompartmentEngine)); each store's deadline is
//! one tick, so wasm that runs is interrupted every tick and [`CpuMeter::tick`]
//! decides: carry on, pause the thread (throttle to `CpuPercent` within a
//! [`WINDOW`]), or trap (the app has run wasm for longer than the budget
//! without once entering the host — it is spinning). The store's call hook
//! tells the meter when the app enters and leaves the host, so time blocked in
//! a host call (a sleep, a socket read) is never counted.
//!
//! Time is wall time spent in guest code on the app's own thread: on a loaded
//! machine it over-counts, which errs on the side of the other apps.

use std::time::{Duration, Instant};

use wasmtime::CallHook;

use crate::error::HostTrap;

/// The accounting window for `CpuPercent`.
pub const WINDOW: Duration = Duration::from_millis(100);

/// One app's CPU meter, kept in its store.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    percent: u8,
    budget: Duration,
    in_guest_since: Option<Instant>,
    streak: Duration,
    total: Duration,
    window_start: Instant,
    window_used: Duration,
    throttled: Duration,
    in_tick: bool,
}

impl CpuMeter {
    pub(crate) fn new(percent: u8, budget: Duration) -> Self {
        CpuMeter {
            percent: percent.clamp(1, 100),
            budget,
            in_guest_since: None,
            streak: Duration::ZERO,
            total: Duration::ZERO,
            window_start: Instant::now(),
            window_used: Duration::ZERO,
            throttled: Duration::ZERO,
            in_tick: false,
        }
    }

    /// Guest time so far.
    pub(crate) fn total(&self) -> Duration {
        self.total
    }

    /// Time the thread was paused to keep to `CpuPercent`.
    #[cfg(test)]
    pub(crate) fn throttled(&self) -> Duration {
        self.throttled
    }

    fn fold(&mut self, now: Instant) {
        if let Some(since) = self.in_guest_since {
            let ran = now.saturating_duration_since(since);
            self.total += ran;
            self.streak += ran;
            self.window_used += ran;
            self.in_guest_since = Some(now);
        }
    }

    /// A transition between wasm and the host.
    pub(crate) fn hook(&mut self, hook: CallHook) {
        let now = Instant::now();
        match hook {
            CallHook::CallingWasm => self.in_guest_since = Some(now),
            CallHook::ReturningFromHost => {
                // wasmtime runs the epoch callback as a host call: that one
                // is the meter itself, not the app entering the host.
                if !std::mem::take(&mut self.in_tick) {
                    self.streak = Duration::ZERO;
                }
                self.in_guest_since = Some(now);
            }
            CallHook::CallingHost | CallHook::ReturningFromWasm => {
                self.fold(now);
                self.in_guest_since = None;
            }
        }
    }

    /// The epoch deadline was reached while wasm ran.
    pub(crate) fn tick(&mut self) -> Result<(), HostTrap> {
        let now = Instant::now();
        self.fold(now);
        self.in_tick = true;
        if self.streak > self.budget {
            return Err(HostTrap::Cpu {
                busy_ms: self.streak.as_millis(),
                budget_ms: self.budget.as_millis(),
            });
        }
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.window_used = Duration::ZERO;
        } else if self.percent < 100 {
            let share = WINDOW * u32::from(self.percent) / 100;
            if self.window_used >= share {
                // Over its share: give the core back until the window ends.
                let pause = (self.window_start + WINDOW).saturating_duration_since(now);
                std::thread::sleep(pause);
                self.throttled += pause;
                let resumed = Instant::now();
                self.window_start = resumed;
                self.window_used = Duration::ZERO;
                if self.in_guest_since.is_some() {
                    self.in_guest_since = Some(resumed);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_in_the_host_is_not_counted_and_resets_the_streak() {
        let mut meter = CpuMeter::new(100, Duration::from_millis(30));
        meter.hook(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(5));
        meter.hook(CallHook::CallingHost);
        std::thread::sleep(Duration::from_millis(40));
        meter.hook(CallHook::ReturningFromHost);
        assert!(meter.tick().is_ok(), "a host call resets the busy streak");
        assert!(meter.total() >= Duration::from_millis(5));
        assert!(
            meter.total() < Duration::from_millis(40),
            "{:?}",
            meter.total()
        );
    }

    #[test]
    fn spinning_past_the_budget_traps() {
        let mut meter = CpuMeter::new(100, Duration::from_millis(20));
        meter.hook(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(25));
        assert!(matches!(meter.tick(), Err(HostTrap::Cpu { .. })));
    }

    #[test]
    fn over_its_share_the_thread_is_paused() {
        let mut meter = CpuMeter::new(10, Duration::from_secs(10));
        meter.hook(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(15));
        assert!(meter.tick().is_ok());
        assert!(
            meter.throttled() > Duration::from_millis(50),
            "{:?}",
            meter.throttled()
        );
    }
}
