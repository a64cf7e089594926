//! Charts as inline SVG, drawn on the server: no script, no external
//! service, readable at any width (they scale with their `viewBox`).

use maud::{html, Markup};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 20.0;

/// One part of a stacked bar: label, value and CSS class (`ok`, `warn`,
/// `bad`, `muted`, `bar`).
pub(crate) struct Part<'a> {
    pub(crate) label: &'a str,
    pub(crate) value: u64,
    pub(crate) class: &'static str,
}

/// One horizontal bar split into parts in proportion, with a legend.
pub(crate) fn stacked(parts: &[Part<'_>], title: &str) -> Markup {
    let total: u64 = parts.iter().map(|p| p.value).sum();
    let mut x = 0.0;
    let mut rects = Vec::new();
    for part in parts.iter().filter(|p| p.value > 0) {
        let w = WIDTH * part.value as f64 / total as f64;
        rects.push((x, w, part));
        x += w;
    }
    html! {
        svg.chart.strip viewBox=(format!("0 0 {WIDTH} 28")) role="img" aria-label=(title) preserveAspectRatio="none" {
            title { (title) }
            @if total == 0 {
                rect.muted x="0" y="4" width=(fmt(WIDTH)) height="20" {}
            }
            @for (x, w, part) in &rects {
                rect class=(part.class) x=(fmt(*x)) y="4" width=(fmt(*w)) height="20" {
                    title { (part.label) ": " (part.value) }
                }
            }
        }
        div.legend {
            @for part in parts {
                span { i class=(part.class) {} (part.label) " " (part.value) }
            }
        }
    }
}

/// Vertical bars over labelled buckets (e.g. occurrences per day).
pub(crate) fn bars(points: &[(String, u64)], title: &str) -> Markup {
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let n = points.len().max(1) as f64;
    let slot = (WIDTH - LEFT) / n;
    let plot = HEIGHT - BOTTOM;
    // Label every k-th bucket so labels never overlap.
    let every = (points.len() / 8).max(1);
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
            title { (title) }
            (axes(max))
            @for (i, (label, value)) in points.iter().enumerate() {
                @let h = plot * *value as f64 / max as f64;
                @let x = LEFT + slot * i as f64;
                rect.bar x=(fmt(x + slot * 0.1)) y=(fmt(plot - h)) width=(fmt(slot * 0.8)) height=(fmt(h)) {
                    title { (label) ": " (value) }
                }
                @if i % every == 0 {
                    text x=(fmt(x)) y=(fmt(HEIGHT - 4.0)) { (label) }
                }
            }
        }
    }
}

/// A line (with its CSS class and label) of cumulative counts over time.
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    pub(crate) class: &'static str,
    /// (time in ms, cumulative value), in time order.
    pub(crate) points: Vec<(i64, u64)>,
}

/// Step lines of cumulative counts over the span from `start` to `end`
/// (ms), e.g. a rollout's installed and failed devices over time.
pub(crate) fn timeline(series: &[Series<'_>], start: i64, end: i64, title: &str) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .max()
        .unwrap_or(0)
        .max(1);
    let span = (end - start).max(1) as f64;
    let plot = HEIGHT - BOTTOM;
    let x_of = |t: i64| LEFT + (WIDTH - LEFT) * (t - start).max(0) as f64 / span;
    let y_of = |v: u64| plot - plot * v as f64 / max as f64;
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
            title { (title) }
            (axes(max))
            text x=(fmt(LEFT)) y=(fmt(HEIGHT - 4.0)) { (super::layout::time(start)) }
            text x=(fmt(WIDTH - 130.0)) y=(fmt(HEIGHT - 4.0)) { (super::layout::time(end)) }
            @for s in series {
                polyline class=(format!("line-{}", s.class)) points=(step_points(&s.points, end, x_of, y_of)) {
                    title { (s.label) }
                }
            }
        }
        div.legend {
            @for s in series {
                span { i class=(s.class) {} (s.label) " " (s.points.last().map_or(0, |p| p.1)) }
            }
        }
    }
}

/// The value axis of a plot: the baseline and its top and bottom labels.
fn axes(max: u64) -> Markup {
    let plot = HEIGHT - BOTTOM;
    html! {
        line.axis x1=(fmt(LEFT)) y1=(fmt(plot)) x2=(fmt(WIDTH)) y2=(fmt(plot)) {}
        text x="0" y="12" { (max) }
        text x="0" y=(fmt(plot)) { "0" }
    }
}

fn step_points(
    points: &[(i64, u64)],
    end: i64,
    x_of: impl Fn(i64) -> f64,
    y_of: impl Fn(u64) -> f64,
) -> String {
    let mut out = Vec::with_capacity(points.len() * 2 + 2);
    let mut last = 0;
    out.push(format!("{},{}", fmt(LEFT), fmt(y_of(0))));
    for (t, v) in points {
        out.push(format!("{},{}", fmt(x_of(*t)), fmt(y_of(last))));
        out.push(format!("{},{}", fmt(x_of(*t)), fmt(y_of(*v))));
        last = *v;
    }
    out.push(format!("{},{}", fmt(x_of(end)), fmt(y_of(last))));
    out.join(" ")
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stacked_bar_splits_its_width_in_proportion() {
        let svg = stacked(
            &[
                Part {
                    label: "attested",
                    value: 3,
                    class: "ok",
                },
                Part {
                    label: "failing",
                    value: 1,
                    class: "bad",
                },
            ],
            "states",
        )
        .into_string();
        assert!(svg.contains(r#"width="750.0""#), "{svg}");
        assert!(svg.contains(r#"x="750.0" y="4" width="250.0""#), "{svg}");
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bars(&[("a".into(), 0), ("b".into(), 10)], "t").into_string();
        assert!(svg.contains(r#"height="140.0""#), "{svg}");
        assert!(svg.contains(">10<"), "{svg}");
    }

    #[test]
    fn a_timeline_steps_up_at_each_point() {
        let svg = timeline(
            &[Series {
                label: "installed",
                class: "ok",
                points: vec![(50, 1), (100, 2)],
            }],
            0,
            100,
            "t",
        )
        .into_string();
        assert!(svg.contains("polyline"), "{svg}");
        assert!(svg.contains("installed 2"), "{svg}");
    }
}
