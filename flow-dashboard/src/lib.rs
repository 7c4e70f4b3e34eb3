//! The dashboard of `serve`: the flows with their schedules (pause, resume) and last
//! runs, the runs (filtered, paged, live), a run's DAG coloured by state and updated live,
//! a task run's states, attempts and log lines, and "run now" with a form built from the
//! flow's parameters. A JSON API under `/api` holds everything the pages show.
//!
//! It reads the run history `serve` writes, hears of changes from `serve`'s [`Hub`], and
//! asks `serve` for runs through the history (as `run --via-serve` does). Pages are HTML
//! made here, with one small script and one stylesheet compiled into the binary.
//!
//! Security: it binds 127.0.0.1 unless told otherwise; bound to any other address it
//! refuses to start without a token, which every request must then carry (`Authorization:
//! Bearer <token>`, or `?token=` once, kept in a cookie). Requests that change something
//! are POSTs, refused from another origin.

#![warn(missing_docs)]

mod api;
mod dag;
mod html;
mod pages;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use flow_history::{History, Recordable};
use flow_runtime::registry::DynFlow;
use flow_serve::Hub;

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// Bound to an address other machines reach, without a token.
    #[error(
        "the dashboard would listen on {addr}, which other machines can reach: set TIDEFLOW_TOKEN to a secret \
         that every request must then carry, or bind 127.0.0.1"
    )]
    NoToken {
        /// The address.
        addr: SocketAddr,
    },
    /// The address cannot be listened on.
    #[error("the dashboard cannot listen on {addr}: {source} (choose another with --bind)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A flow the dashboard shows.
pub(crate) struct Served {
    pub(crate) flow: DynFlow,
    pub(crate) version: String,
}

/// What every handler reads.
pub(crate) struct Shared {
    pub(crate) history: Arc<History>,
    pub(crate) flows: Vec<Served>,
    pub(crate) hub: Hub,
    token: Option<String>,
    /// Flips to `true` when the dashboard stops: open event streams end.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn flow(&self, name: &str) -> Option<&Served> {
        self.flows.iter().find(|f| f.flow.name() == name)
    }
}

/// The dashboard, listening.
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    router: Router,
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// Listens on `addr` for the dashboard of `flows` (those `serve` serves), reading
    /// `history` and `serve`'s `hub`. `token`: the secret every request must carry;
    /// required unless `addr` is a loopback address.
    ///
    /// # Errors
    /// [`DashboardError::NoToken`], [`DashboardError::Bind`].
    pub async fn bind(
        addr: SocketAddr,
        token: Option<String>,
        history: Arc<History>,
        flows: &[DynFlow],
        hub: Hub,
    ) -> Result<Dashboard, DashboardError> {
        let token = token.filter(|t| !t.is_empty());
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(DashboardError::NoToken { addr });
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            history,
            flows: flows
                .iter()
                .map(|f| Served {
                    version: f.run_info().version,
                    flow: f.clone(),
                })
                .collect(),
            hub,
            token,
            stopping,
        });
        Ok(Dashboard {
            listener,
            router: router(shared),
            addr,
            stop,
        })
    }

    /// The address it listens on (the port chosen, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves requests until `shutdown` completes; open event streams end then.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let stop = self.stop;
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/flows") }))
        .route("/flows", get(pages::flows))
        .route("/flows/{name}/run", get(pages::run_form).post(pages::run_now))
        .route("/flows/{name}/schedules", post(pages::pause))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/tasks/{node}", get(pages::task))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css", include_str!("../assets/app.css")) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", include_str!("../assets/app.js")) }),
        )
        .route("/api/flows", get(api::flows))
        .route("/api/flows/{name}/runs", post(api::run_now))
        .route("/api/flows/{name}/schedules", post(api::pause))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/runs/{id}/tasks/{node}", get(api::task))
        .route("/api/runs/{id}/children/{node}", get(api::children))
        .route("/api/runs/{id}/logs", get(api::logs))
        .route("/api/runs/{id}/events", get(api::run_events))
        .route("/api/events", get(api::events))
        .fallback(|| async { api::Problem::not_found("no such page").into_response() })
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), guard))
        .with_state(shared)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The token on every request (when there is one); POSTs from this origin only.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut set_cookie = None;
    if let Some(token) = &shared.token {
        let given = bearer(headers)
            .or_else(|| cookie(headers, "tideflow_token"))
            .map(str::to_owned);
        let from_query = query_token(request.uri().query());
        match (given, from_query) {
            (Some(t), _) if eq(&t, token) => {}
            (_, Some(t)) if eq(&t, token) => {
                set_cookie = Some(format!("tideflow_token={t}; HttpOnly; SameSite=Strict; Path=/"));
            }
            _ => {
                return api::Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: `Authorization: Bearer <token>`, or open it once with ?token=<token>",
                )
                .into_response()
            }
        }
    }
    if request.method() == Method::POST && cross_origin(headers) {
        return api::Problem::new(
            StatusCode::FORBIDDEN,
            "a request from another site cannot change anything here",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(cookie) = set_cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Compares in time independent of where the strings differ.
fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| html::url_decode(v))
}

/// A POST whose `Origin` (or `Sec-Fetch-Site`) says it comes from another site.
fn cross_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin == "null" || origin_host != host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_origin_is_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:4200".parse().expect("a header"));
        assert!(!cross_origin(&h), "no Origin: a tool such as curl");
        h.insert(header::ORIGIN, "http://127.0.0.1:4200".parse().expect("a header"));
        assert!(!cross_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().expect("a header"));
        assert!(cross_origin(&h));
        h.insert(header::ORIGIN, "null".parse().expect("a header"));
        assert!(cross_origin(&h));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", "cross-site".parse().expect("a header"));
        assert!(cross_origin(&h));
    }

    #[test]
    fn tokens_are_read_from_the_header_the_cookie_or_the_query() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().expect("a header"));
        h.insert(
            header::COOKIE,
            "a=1; tideflow_token=k%20y".parse().expect("a header"),
        );
        assert_eq!(bearer(&h), Some("s3cret"));
        assert_eq!(cookie(&h, "tideflow_token"), Some("k%20y"));
        assert_eq!(query_token(Some("x=1&token=a%2Bb")), Some("a+b".to_owned()));
        assert!(eq("abc", "abc"));
        assert!(!eq("abc", "abd"));
        assert!(!eq("abc", "ab"));
    }
}
