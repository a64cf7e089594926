//! Validity periods: unix seconds in the API, `OffsetDateTime` for rcgen.

use time::OffsetDateTime;

use crate::PkiError;

/// Longest validity this crate issues, in days (about 100 years).
pub const MAX_VALIDITY_DAYS: u32 = 36_525;

/// How far before "now" issued certificates start, so that a verifier whose
/// clock is a little behind the issuer's still accepts a fresh certificate.
pub(crate) const BACKDATE_SECONDS: i64 = 3_600;

/// A certificate's validity period in unix seconds (both ends inclusive, as in X.509).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Validity {
    /// From an hour ago until `days` days from now.
    pub(crate) fn days_from_now(days: u32) -> Result<Validity, PkiError> {
        if days == 0 || days > MAX_VALIDITY_DAYS {
            return Err(PkiError::InvalidArgument(format!(
                "validity of {days} days; choose between 1 and {MAX_VALIDITY_DAYS}"
            )));
        }
        let now = now_unix();
        Ok(Validity {
            not_before: now.saturating_sub(BACKDATE_SECONDS),
            not_after: now.saturating_add(i64::from(days).saturating_mul(86_400)),
        })
    }

    /// The same period, but ending no later than `limit` (an issuer's own notAfter).
    pub(crate) fn capped_at(self, limit: i64) -> Validity {
        Validity {
            not_before: self.not_before,
            not_after: self.not_after.min(limit),
        }
    }

    /// The two ends as rcgen wants them.
    pub(crate) fn to_offsets(self) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
        if self.not_before > self.not_after {
            return Err(PkiError::InvalidArgument(format!(
                "validity starts at {} but ends earlier, at {}",
                display_unix(self.not_before),
                display_unix(self.not_after)
            )));
        }
        Ok((offset(self.not_before)?, offset(self.not_after)?))
    }
}

/// Current time in unix seconds.
pub(crate) fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn offset(unix: i64) -> Result<OffsetDateTime, PkiError> {
    let t = OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|_| PkiError::InvalidArgument(format!("time {unix} is out of range")))?;
    // X.509 (GeneralizedTime) cannot express years past 9999.
    if t.year() < 1950 || t.year() > 9999 {
        return Err(PkiError::InvalidArgument(format!(
            "time {} is outside the years X.509 can express (1950 to 9999)",
            display_unix(unix)
        )));
    }
    Ok(t)
}

/// `2026-03-01T12:00:00Z`, or the bare number if it is not a representable date.
pub(crate) fn display_unix(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("unix time {unix}"),
    }
}

/// Fails with `Expired` / `NotYetValid` unless `now` lies within `[not_before, not_after]`.
pub(crate) fn check_period(
    subject: &str,
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Result<(), PkiError> {
    if now < not_before {
        return Err(PkiError::NotYetValid {
            subject: subject.to_owned(),
            not_before,
        });
    }
    if now > not_after {
        return Err(PkiError::Expired {
            subject: subject.to_owned(),
            not_after,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_rfc3339_utc() {
        assert_eq!(display_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(display_unix(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(display_unix(i64::MAX), format!("unix time {}", i64::MAX));
    }

    #[test]
    fn validity_days_are_bounded() {
        assert!(Validity::days_from_now(0).is_err());
        assert!(Validity::days_from_now(MAX_VALIDITY_DAYS + 1).is_err());
        let v = Validity::days_from_now(1).unwrap();
        assert_eq!(v.not_after - v.not_before, 86_400 + BACKDATE_SECONDS);
        assert!(v.to_offsets().is_ok());
        assert_eq!(v.capped_at(v.not_before + 5).not_after, v.not_before + 5);
    }

    #[test]
    fn inverted_or_unrepresentable_periods_are_refused() {
        for (not_before, not_after) in [(10, 5), (-1_000_000_000_000, 0), (0, 400_000_000_000)] {
            let v = Validity {
                not_before,
                not_after,
            };
            assert!(
                matches!(v.to_offsets(), Err(PkiError::InvalidArgument(_))),
                "{v:?}"
            );
        }
    }

    #[test]
    fn period_check_names_the_side() {
        let check = |now| check_period("CN=x", 100, 200, now);
        assert!(check(100).is_ok());
        assert!(check(200).is_ok());
        assert!(matches!(
            check(99),
            Err(PkiError::NotYetValid {
                not_before: 100,
                ..
            })
        ));
        assert!(matches!(
            check(201),
            Err(PkiError::Expired { not_after: 200, .. })
        ));
    }
}
