//! The console at `/ui/`: four static files built into the binary
//! (`crates/server/ui/`: HTML, CSS, a JavaScript module and an icon, written by
//! hand, so `cargo build` needs no other toolchain and the files in the
//! repository are what is served). The console is a client of the REST API:
//! it signs in with a token kept in the tab's `sessionStorage` and sends it
//! as a bearer header on each call, so there is no cookie for another site to
//! ride on. The files hold no data and are public; every call they make is
//! authenticated like any other.
//!
//! Each answer carries a strict Content-Security-Policy (scripts, styles and
//! connections to this origin only, no inline code, no framing), and an
//! entity tag: the browser asks again with `If-None-Match` and gets a 304.

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

/// The console's path.
pub const PATH: &str = "/ui";

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");
const ICON: &str = include_str!("../ui/icon.svg");

/// What every console answer may load and do.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Whether `path` is the console's (served without a token).
pub fn is_console(path: &str) -> bool {
    path == PATH || path.starts_with("/ui/")
}

/// The console's routes.
pub fn router() -> Router {
    Router::new()
        .route(PATH, get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|h: HeaderMap| async move { asset(&h, INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/index.html",
            get(|h: HeaderMap| async move { asset(&h, INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { asset(&h, APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|h: HeaderMap| async move { asset(&h, APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/icon.svg",
            get(|h: HeaderMap| async move { asset(&h, ICON, "image/svg+xml") }),
        )
}

/// The entity tag of `body`: a digest of its bytes.
fn tag(body: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(body.as_bytes());
    format!("\"{}\"", hex::encode(&d[..8]))
}

fn asset(request: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let etag = tag(body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
