//! When a downloaded update may be applied: inside the group's update
//! window, and not while the app holds it back with a bounded deferral.
//!
//! - **Window.** The group's window (`HH:MM-HH:MM`, UTC) comes signed in
//!   the target's custom metadata. Outside it the verified image is kept
//!   (`fetch` stages it) and applied by the first round inside the window.
//! - **App deferral.** An app with `MutableStorage` asks to hold its
//!   update back by writing a number of seconds to
//!   `/data/sevenfold-defer-update` (its storage is
//!   `app-storage/<component>/` here, so the file is
//!   [`DEFER_FILE`] there). The hold is counted from the first round that
//!   held *this* target back (recorded in `updates/deferrals/<component>`)
//!   and never lasts past [`MAX_DEFERRAL_SECS`] from then, however often the
//!   app renews or raises its request; deleting the file ends it.
//!
//! `agent update --now` overrides both (the operator's decision).

use sevenfold_core::window::{parse_deferral, UpdateWindow, MAX_DEFERRAL_SECS};

use crate::{fsutil, AgentError, StateDir, APP_STORAGE_DIR};

/// The deferral request's name in an app's storage directory.
pub(crate) const DEFER_FILE: &str = "sevenfold-defer-update";
/// Where the agent records when it first held a target back for an app.
const DEFERRALS_DIR: &str = "updates/deferrals";
/// Longest deferral request read.
const MAX_REQUEST_LEN: u64 = 64;

/// Why a target is held back, and when the hold lifts by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hold {
    /// For the operator (reported as the progress reason).
    pub(crate) reason: String,
    /// Seconds until the window opens or the deferral runs out; `None`
    /// when only a change on the service lifts it (an unusable window).
    pub(crate) lifts_in_secs: Option<u64>,
}

/// Why the target may not be applied now, or `None` if it may.
pub(crate) fn hold(
    state: &StateDir,
    component: &str,
    target_sha256: &str,
    window: Option<&str>,
    now_secs: i64,
) -> Result<Option<Hold>, AgentError> {
    if let Some(text) = window {
        match UpdateWindow::parse(text) {
            Ok(w) if !w.contains(now_secs) => {
                let opens_in = w.opens_in(now_secs);
                return Ok(Some(Hold {
                    reason: format!(
                        "outside the group's update window {w} UTC (opens in {} min); \
                         downloaded and verified, applied inside the window",
                        opens_in.div_ceil(60)
                    ),
                    lifts_in_secs: Some(u64::from(opens_in)),
                }));
            }
            Ok(_) => {}
            // Signed, but unusable: hold (fail closed); `--now` overrides.
            Err(e) => {
                return Ok(Some(Hold {
                    reason: format!("{e}; not applied until the window is fixed"),
                    lifts_in_secs: None,
                }))
            }
        }
    }
    deferral(state, component, target_sha256, now_secs)
}

fn request(state: &StateDir, component: &str) -> Result<Option<u32>, AgentError> {
    let path = state.path(APP_STORAGE_DIR).join(component).join(DEFER_FILE);
    // Only a regular file the app wrote; never follow a link it made.
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            tracing::warn!(path = %path.display(), "deferral request is not a regular file; ignored");
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io("inspect", &path, e)),
    }
    let Some(bytes) = fsutil::read_bounded(&path, MAX_REQUEST_LEN, false)
        .ok()
        .flatten()
    else {
        tracing::warn!(path = %path.display(), "deferral request unreadable or too long; ignored");
        return Ok(None);
    };
    match parse_deferral(&String::from_utf8_lossy(&bytes)) {
        Ok(secs) => Ok(Some(secs)),
        Err(e) => {
            tracing::warn!(component, error = %e, "deferral request ignored");
            Ok(None)
        }
    }
}

fn deferral(
    state: &StateDir,
    component: &str,
    target_sha256: &str,
    now_secs: i64,
) -> Result<Option<Hold>, AgentError> {
    let Some(requested) = request(state, component)? else {
        return Ok(None);
    };
    let dir = state.path(DEFERRALS_DIR);
    fsutil::create_private_dir(&dir)?;
    // `<target sha256> <first held, unix seconds>`.
    let since = fsutil::read_bounded(&dir.join(component), 256, true)?.and_then(|b| {
        let text = String::from_utf8_lossy(&b).into_owned();
        let (sha, since) = text.trim().split_once(' ')?;
        (sha == target_sha256).then(|| since.parse::<i64>().ok())?
    });
    let since = match since {
        Some(since) if since <= now_secs => since,
        _ => {
            let record = format!("{target_sha256} {now_secs}\n");
            fsutil::write_atomic(&dir, component, record.as_bytes())?;
            now_secs
        }
    };
    let until = since.saturating_add(i64::from(requested.min(MAX_DEFERRAL_SECS)));
    if now_secs < until {
        Ok(Some(Hold {
            reason: format!(
                "deferred by the app for {} s more (an app may defer an update at most {} h)",
                until - now_secs,
                MAX_DEFERRAL_SECS / 3600
            ),
            lifts_in_secs: u64::try_from(until - now_secs).ok(),
        }))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::update::slots::tests::state;

    fn request_defer(state: &StateDir, component: &str, text: &str) {
        let dir = state.path(APP_STORAGE_DIR).join(component);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(DEFER_FILE), text).unwrap();
    }

    const T0: i64 = 20_000 * 86_400 + 3 * 3600; // 03:00 UTC

    #[test]
    fn the_window_holds_outside_and_lets_through_inside() {
        let (_d, s) = state();
        let held = hold(&s, "c", "aa", Some("04:00-05:00"), T0)
            .unwrap()
            .unwrap();
        assert_eq!(
            held.lifts_in_secs,
            Some(3600),
            "it lifts when the window opens"
        );
        let held = held.reason;
        assert!(
            held.contains("outside the group's update window 04:00-05:00"),
            "{held}"
        );
        assert!(held.contains("opens in 60 min"), "{held}");
        assert_eq!(hold(&s, "c", "aa", Some("02:30-03:30"), T0).unwrap(), None);
        assert_eq!(hold(&s, "c", "aa", None, T0).unwrap(), None);
        // An unusable window holds (fail closed).
        assert!(hold(&s, "c", "aa", Some("soon"), T0).unwrap().is_some());
    }

    #[test]
    fn an_app_deferral_is_honoured_and_bounded_from_the_first_hold() {
        let (_d, s) = state();
        request_defer(&s, "c", "600\n");
        let held = hold(&s, "c", "aa", None, T0).unwrap().unwrap();
        assert_eq!(
            held.lifts_in_secs,
            Some(600),
            "it lifts when the deferral runs out"
        );
        let held = held.reason;
        assert!(held.contains("600 s more"), "{held}");
        assert!(s.path(DEFERRALS_DIR).join("c").exists());
        assert!(hold(&s, "c", "aa", None, T0 + 599).unwrap().is_some());
        assert_eq!(hold(&s, "c", "aa", None, T0 + 600).unwrap(), None);
        // Asking for more later does not extend past 24 h from the first hold.
        request_defer(&s, "c", "999999");
        assert!(hold(&s, "c", "aa", None, T0 + 86_399).unwrap().is_some());
        assert_eq!(hold(&s, "c", "aa", None, T0 + 86_400).unwrap(), None);
        // A new target starts a new, again bounded, deferral.
        assert!(hold(&s, "c", "bb", None, T0 + 90_000).unwrap().is_some());
        // Deleting the request ends it.
        std::fs::remove_file(s.path(APP_STORAGE_DIR).join("c").join(DEFER_FILE)).unwrap();
        assert_eq!(hold(&s, "c", "bb", None, T0 + 90_001).unwrap(), None);
    }

    #[test]
    fn bad_or_linked_requests_are_ignored() {
        let (_d, s) = state();
        request_defer(&s, "c", "one hour");
        assert_eq!(hold(&s, "c", "aa", None, T0).unwrap(), None);
        let dir = s.path(APP_STORAGE_DIR).join("d");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join(DEFER_FILE)).unwrap();
        assert_eq!(hold(&s, "d", "aa", None, T0).unwrap(), None);
    }
}
