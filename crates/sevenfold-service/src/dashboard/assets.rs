//! The stylesheet and script, compiled into the binary: the dashboard
//! loads nothing from anywhere else.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Where pages link the stylesheet.
pub(crate) const STYLESHEET: &str = "/ui/assets/dashboard.css";
/// Where pages load the script.
pub(crate) const SCRIPT: &str = "/ui/assets/dashboard.js";

const CSS: &str = include_str!("static/dashboard.css");
const JS: &str = include_str!("static/dashboard.js");

/// `GET /ui/assets/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        "dashboard.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}
