//! The page shell (header, navigation, footer) and the small formatting
//! helpers every page shares.

use axum::http::StatusCode;
use axum::response::Html;
use maud::{html, Markup, DOCTYPE};

use super::session::Session;
use crate::store::FleetState;

/// Which section of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Fleet,
    Devices,
    Rollouts,
    Problems,
    Ca,
}

/// A page without navigation (login, errors).
pub(crate) fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body { (body) }
            }
        }
        .into_string(),
    )
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Sevenfold" }
            link rel="stylesheet" href=(super::assets::STYLESHEET);
            script src=(super::assets::SCRIPT) defer {}
        }
    }
}

/// A tenant page: header with the tenant, the operator and their role,
/// navigation, then `body`.
pub(crate) fn page(
    session: &Session,
    tenant_id: &str,
    tenant_name: &str,
    section: Section,
    title: &str,
    body: Markup,
) -> Html<String> {
    let base = format!("/ui/t/{tenant_id}");
    let nav = [
        (Section::Fleet, "Fleet", base.clone()),
        (Section::Devices, "Devices", format!("{base}/devices")),
        (Section::Rollouts, "Deployments", format!("{base}/groups")),
        (Section::Problems, "Problems", format!("{base}/problems")),
        (Section::Ca, "Tenant CA", format!("{base}/ca")),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    header.top {
                        a.brand href="/ui/" { "Sevenfold" }
                        span.tenant { (tenant_name) }
                        nav {
                            @for (s, label, href) in &nav {
                                @if *s == section {
                                    a.current href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        form.logout method="post" action="/ui/logout" {
                            span.who {
                                (session.operator.name())
                                @if let Some(role) = session.role_in(tenant_id) { " · " (role) }
                            }
                            button type="submit" { "Log out" }
                        }
                    }
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// The page shown for an error.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Html<String> {
    bare(
        status.canonical_reason().unwrap_or("Error"),
        html! {
            main.error-page {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                p.error role="alert" { (message) }
                p { a href="/ui/" { "Back to the dashboard" } }
            }
        },
    )
}

/// RFC 3339 (UTC, to the second) from unix milliseconds.
pub(crate) fn time(ms: i64) -> String {
    let full = crate::api::timestamp(ms);
    // 2026-11-30T01:02:03.456Z → 2026-11-30 01:02:03Z
    match full.split_once('.') {
        Some((head, _)) => format!("{}Z", head.replacen('T', " ", 1)),
        None => full.replacen('T', " ", 1),
    }
}

/// "3 min ago", "in 23 h": a moment relative to `now`.
pub(crate) fn relative(ms: i64, now: i64) -> String {
    let (future, delta) = if ms > now {
        (true, (ms - now) / 1000)
    } else {
        (false, (now - ms) / 1000)
    };
    let amount = match delta {
        d if d < 60 => format!("{d} s"),
        d if d < 3600 => format!("{} min", d / 60),
        d if d < 2 * 86_400 => format!("{} h", d / 3600),
        d => format!("{} d", d / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A time with its relative form as a tooltip, or "never".
pub(crate) fn when(ms: Option<i64>, now: i64) -> Markup {
    match ms {
        Some(ms) => {
            html! { time datetime=(crate::api::timestamp(ms)) title=(time(ms)) { (relative(ms, now)) } }
        }
        None => html! { span.muted { "never" } },
    }
}

/// The first 12 characters of a long hex ID, the whole ID as a tooltip.
pub(crate) fn short(id: &str) -> Markup {
    let head: String = id.chars().take(12).collect();
    if head.len() == id.len() {
        html! { code { (id) } }
    } else {
        html! { code title=(id) { (head) "…" } }
    }
}

/// A coloured label for a device's state.
pub(crate) fn state_badge(state: FleetState) -> Markup {
    let class = match state {
        FleetState::Attested => "badge ok",
        FleetState::Expired => "badge warn",
        FleetState::Failing | FleetState::Revoked => "badge bad",
        FleetState::NeverAttested => "badge muted",
    };
    html! { span class=(class) { (state.as_str()) } }
}

/// A coloured label for any status word.
pub(crate) fn status_badge(status: &str) -> Markup {
    let class = match status {
        "pass" | "active" | "installed" | "resolved" | "attested" => "badge ok",
        "halted" | "downloading" | "pending" | "expired" => "badge warn",
        "fail" | "failed" | "rolled-back" | "open" | "regression" | "revoked" => "badge bad",
        _ => "badge muted",
    };
    html! { span class=(class) { (status) } }
}

/// A hidden CSRF field for a form.
pub(crate) fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_naturally() {
        assert_eq!(relative(1_000, 61_000), "1 min ago");
        assert_eq!(relative(3_600_000 * 30, 0), "in 30 h");
        assert_eq!(relative(0, 86_400_000 * 3), "3 d ago");
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn interpolated_text_is_escaped() {
        let page = bare("x", html! { p { ("<script>alert(1)</script>") } });
        assert!(!page.0.contains("<script>alert"));
        assert!(page.0.contains("&lt;script&gt;"));
    }
}
