//! The launchpad's HTTP control API over a [`Launcher`]: `/start?config=NAME`, `/stop`,
//! `/restart?seconds=N` (default 5) and `/change`, any method (the Java harness POSTs, the Go one GETs).
//! Replies `{"status":"success","message":…}` (200) or `{"status":"error","message":…}` (500; 404 for an
//! unknown path).
//!
//! What it does not do: authentication or TLS — it is a loopback test tool.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use super::Launcher;

/// Default `seconds` of `/restart` (the launchpad's).
pub const DEFAULT_RESTART_SECONDS: u64 = 5;

/// Serves the control API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, launcher: Arc<Launcher>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let launcher = Arc::clone(&launcher);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let launcher = Arc::clone(&launcher);
                async move { Ok::<_, Infallible>(handle(&launcher, request).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Value of query parameter `name` (no percent-decoding: names and numbers only).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

async fn handle(launcher: &Arc<Launcher>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let query = request.uri().query();
    let outcome = match request.uri().path() {
        "/start" => {
            let config = query_param(query, "config");
            launcher
                .start(config)
                .await
                .map(|name| format!("flagpole started with config {name}"))
        }
        "/stop" => launcher
            .stop()
            .await
            .map(|()| "flagpole stopped".to_owned()),
        "/restart" => {
            let seconds = match query_param(query, "seconds").filter(|s| !s.is_empty()) {
                None => Ok(DEFAULT_RESTART_SECONDS),
                Some(text) => text.parse::<u64>().map_err(|_| text.to_owned()),
            };
            match seconds {
                Ok(seconds) => launcher
                    .restart(seconds)
                    .await
                    .map(|()| format!("flagpole restarting in {seconds}s")),
                Err(text) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "error",
                        &format!("invalid seconds {text:?}"),
                    );
                }
            }
        }
        "/change" => launcher
            .change()
            .await
            .map(|variant| format!("changing-flag default variant is now {variant}")),
        other => return reply(StatusCode::NOT_FOUND, "error", &format!("no route {other}")),
    };
    match outcome {
        Ok(message) => reply(StatusCode::OK, "success", &message),
        Err(error) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error",
            &error.to_string(),
        ),
    }
}

fn reply(status: StatusCode, word: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"status": word, "message": message}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::query_param;
    use crate::launcher::{Launcher, LauncherOptions, testbed_dir};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn call(port: u16, method: &str, target: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|error| panic!("connect: {error}"));
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|error| panic!("write: {error}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .unwrap_or_else(|error| panic!("read: {error}"));
        response
    }

    #[tokio::test]
    async fn control_api_routes_and_reports_outcomes() {
        let launcher = Launcher::new(LauncherOptions {
            testbed_dir: testbed_dir(),
            // A "daemon" that exits at once.
            daemon_bin: "/bin/false".into(),
            ports: None,
            daemon_output: false,
            extra_config: Vec::new(),
        })
        .unwrap_or_else(|error| panic!("launcher: {error}"));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|error| panic!("bind: {error}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("addr: {error}"))
            .port();
        let server = tokio::spawn(super::serve(listener, launcher.clone()));

        let changed = call(port, "GET", "/change").await;
        assert!(changed.starts_with("HTTP/1.1 200"), "{changed}");
        assert!(changed.contains("now bar"), "{changed}");
        let changed = call(port, "POST", "/change").await;
        assert!(changed.contains("now foo"), "{changed}");

        let start = call(port, "POST", "/start?config=default").await;
        assert!(start.starts_with("HTTP/1.1 500"), "{start}");
        assert!(
            start.contains("daemon exited before it was ready"),
            "{start}"
        );
        let unknown = call(port, "GET", "/start?config=nope").await;
        assert!(unknown.contains("unknown launchpad config"), "{unknown}");
        let bad = call(port, "GET", "/restart?seconds=soon").await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        let missing = call(port, "GET", "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        let restart = call(port, "GET", "/restart?seconds=60").await;
        assert!(restart.starts_with("HTTP/1.1 200"), "{restart}");
        assert!(
            !launcher.fixture().all_flags_path().exists(),
            "restart removes flags/allFlags.json"
        );
        let stop = call(port, "GET", "/stop").await;
        assert!(stop.starts_with("HTTP/1.1 200"), "{stop}");
        server.abort();
    }

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param(Some("config=ssl&x=1"), "config"), Some("ssl"));
        assert_eq!(query_param(Some("seconds=3"), "seconds"), Some("3"));
        assert_eq!(query_param(Some("config"), "config"), Some(""));
        assert_eq!(query_param(None, "config"), None);
        assert_eq!(query_param(Some("a=1"), "config"), None);
    }
}
