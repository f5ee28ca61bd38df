//! # Web UI (DESIGN.md §4: `GET /`, `GET /trace/{trace_id}`)
//!
//! A single-page app in plain HTML, CSS and JavaScript, embedded in the binary with
//! `include_str!` so it works offline and needs no build step. One `index.html` is answered for
//! every page path (`/`, `/search`, `/trace/{trace_id}`, `/map`); `app.js` routes on the client
//! and reads the JSON query API of the same port, so the UI never sees data the API does not
//! give a `curl` user.
//!
//! Every span string is untrusted: the script builds the DOM with `createElement`,
//! `textContent` and `setAttribute` on non-script attributes only (a unit test below rejects
//! `innerHTML` and friends in `app.js`). Every UI answer carries a Content-Security-Policy
//! that forbids inline script, styles from elsewhere and framing
//! (reliability.md §4.3, §7.5 Q8/Q9), plus `nosniff` and `Referrer-Policy: no-referrer`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy of every UI answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// The UI routes: the page paths answer `index.html`; assets live under `/ui/`.
/// Generic over the state so it merges into [`query_app`](crate::query_app).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/search", get(index))
        .route("/map", get(index))
        .route("/trace/{trace_id}", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/ui/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .layer(axum::middleware::map_response(security_headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

/// The query port's answer to a path nothing serves: a browser (a `GET` that accepts
/// `text/html`) asking outside the APIs (`/v1/`, `/api/`, `/ui/`) gets the UI with status 404,
/// which shows a "page not found" view with links; every other client gets the JSON
/// `{"error": "no such endpoint"}` (404).
pub async fn fallback(request: axum::extract::Request) -> Response {
    let path = request.uri().path();
    let api = ["/v1/", "/api/", "/ui/"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    let browser = request.method() == axum::http::Method::GET
        && request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("text/html"));
    if browser && !api {
        let mut page = security_headers(index().await).await;
        *page.status_mut() = axum::http::StatusCode::NOT_FOUND;
        return page;
    }
    crate::Error::NotFound("no such endpoint".into()).into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
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
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get_path(path: &str) -> Response {
        router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn pages_answer_index_with_security_headers() {
        for path in [
            "/",
            "/search",
            "/map",
            "/trace/4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            let r = get_path(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        }
    }

    #[tokio::test]
    async fn unknown_paths_show_browsers_a_page_and_clients_json() {
        let app = router::<()>().fallback(fallback);
        let ask = |path: &str, accept: &str| {
            let app = app.clone();
            let request = Request::get(path)
                .header(header::ACCEPT, accept)
                .body(Body::empty())
                .unwrap();
            async move { app.oneshot(request).await.unwrap() }
        };
        let page = ask("/nope", "text/html,application/xhtml+xml,*/*;q=0.8").await;
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(
            page.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        for (path, accept) in [("/nope", "*/*"), ("/v1/nope", "text/html")] {
            let r = ask(path, accept).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(
                r.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn assets_have_their_types() {
        for (path, ty) in [
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let r = get_path(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{path}");
            assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        }
    }

    #[test]
    fn csp_forbids_inline_script_and_framing() {
        let script = CONTENT_SECURITY_POLICY
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap();
        assert_eq!(script, "script-src 'self'");
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }

    /// Data must reach the DOM as text only: no HTML parsing sinks, no eval.
    #[test]
    fn script_uses_no_html_sinks() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout('",
            "javascript:",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
        // The page loads only same-origin script and style, and has no inline script.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!INDEX_HTML.contains("style="));
    }
}
