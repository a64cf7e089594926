//! Update windows and app deferrals: when a device may apply an update
//! that restarts apps.
//!
//! An [`UpdateWindow`] is a daily span of UTC time, written `HH:MM-HH:MM`
//! (`02:00-04:00`; `22:00-02:00` wraps over midnight). The operator sets it
//! on a device group; the service signs it into each target's custom
//! metadata, so the device learns it through TUF like everything else.
//!
//! An app may ask to hold an update back for at most [`MAX_DEFERRAL_SECS`]
//! (see [`parse_deferral`] for the request's form; the agent owns where it
//! is read from).

use std::fmt;

/// Seconds in a day.
const DAY: u32 = 86_400;

/// The longest an app may defer an update: 24 hours, counted from when the
/// device first held that update back for it.
pub const MAX_DEFERRAL_SECS: u32 = DAY;

/// Why a window or a deferral request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// Not `HH:MM-HH:MM` with valid times and two different ends.
    #[error("update window {0:?} is not HH:MM-HH:MM (UTC, 00:00 to 23:59, two different times)")]
    BadWindow(String),
    /// A deferral request that is not a number of seconds.
    #[error("deferral request {0:?} is not a whole number of seconds")]
    BadDeferral(String),
}

/// A daily span of UTC time; start inclusive, end exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateWindow {
    start: u32,
    end: u32,
}

fn time_of_day(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

impl UpdateWindow {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<UpdateWindow, WindowError> {
        let bad = || WindowError::BadWindow(text.to_owned());
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let (start, end) = (
            time_of_day(a).ok_or_else(bad)?,
            time_of_day(b).ok_or_else(bad)?,
        );
        if start == end {
            return Err(bad());
        }
        Ok(UpdateWindow { start, end })
    }

    /// Whether `unix_secs` falls inside the window.
    pub fn contains(&self, unix_secs: i64) -> bool {
        let t = u32::try_from(unix_secs.rem_euclid(i64::from(DAY))).unwrap_or(0);
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// Seconds from `unix_secs` until the window next opens (0 inside it).
    pub fn opens_in(&self, unix_secs: i64) -> u32 {
        if self.contains(unix_secs) {
            return 0;
        }
        let t = u32::try_from(unix_secs.rem_euclid(i64::from(DAY))).unwrap_or(0);
        (self.start + DAY - t) % DAY
    }
}

impl fmt::Display for UpdateWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |s: u32| (s / 3600, s % 3600 / 60);
        let ((sh, sm), (eh, em)) = (hm(self.start), hm(self.end));
        write!(f, "{sh:02}:{sm:02}-{eh:02}:{em:02}")
    }
}

/// Parses an app's deferral request: a whole number of seconds (ASCII
/// digits, surrounding white space allowed), clamped to
/// [`MAX_DEFERRAL_SECS`].
pub fn parse_deferral(text: &str) -> Result<u32, WindowError> {
    let t = text.trim();
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WindowError::BadDeferral(text.chars().take(40).collect()));
    }
    let secs: u64 = t
        .parse()
        .map_err(|_| WindowError::BadDeferral(t.to_owned()))?;
    Ok(u32::try_from(secs.min(u64::from(MAX_DEFERRAL_SECS))).unwrap_or(MAX_DEFERRAL_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64, m: i64) -> i64 {
        // Some day far from the epoch, to show only the time of day counts.
        20_000 * 86_400 + h * 3600 + m * 60
    }

    #[test]
    fn windows_parse_print_and_contain() {
        let w = UpdateWindow::parse("02:00-04:00").unwrap();
        assert_eq!(w.to_string(), "02:00-04:00");
        assert!(!w.contains(at(1, 59)));
        assert!(w.contains(at(2, 0)));
        assert!(w.contains(at(3, 59)));
        assert!(!w.contains(at(4, 0)));
        assert_eq!(w.opens_in(at(1, 0)), 3600);
        assert_eq!(w.opens_in(at(5, 0)), 21 * 3600);
        assert_eq!(w.opens_in(at(3, 0)), 0);
        // Over midnight.
        let night = UpdateWindow::parse("22:30-01:00").unwrap();
        assert!(night.contains(at(23, 0)));
        assert!(night.contains(at(0, 30)));
        assert!(!night.contains(at(1, 0)));
        assert!(!night.contains(at(12, 0)));
    }

    #[test]
    fn bad_windows_are_refused() {
        for bad in [
            "",
            "02:00",
            "2:00-04:00",
            "02:00-24:00",
            "02:60-03:00",
            "02:00-02:00",
            "a-b",
            "02:00-04:00-05:00",
        ] {
            assert!(UpdateWindow::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deferrals_are_seconds_and_bounded() {
        assert_eq!(parse_deferral("3600\n").unwrap(), 3600);
        assert_eq!(parse_deferral("999999999").unwrap(), MAX_DEFERRAL_SECS);
        for bad in ["", "-5", "1h", "12.5", "9999999999999"] {
            assert!(parse_deferral(bad).is_err(), "{bad}");
        }
    }
}
