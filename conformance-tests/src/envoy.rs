//! A stand-in for the testbed's envoy (`docs/conformance.md#how-it-works`): an h2c reverse proxy that routes gRPC by
//! `:authority` — anything containing `sync` to the daemon's sync port, everything else to its evaluation
//! port — and a second listener that answers every request with HTTP 403 (which gRPC clients see as
//! `PERMISSION_DENIED`), for the `@forbidden` scenarios.
//!
//! What it does not do: TLS, retries, load balancing or any envoy configuration; both listeners bind to
//! free loopback ports and stop when the [`Envoy`] is dropped.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// The two listeners; both tasks are aborted on drop.
#[derive(Debug)]
pub struct Envoy {
    route_addr: SocketAddr,
    forbidden_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Envoy {
    /// Binds both listeners on free loopback ports, proxying to `127.0.0.1:{evaluation_port,sync_port}`.
    pub async fn start(evaluation_port: u16, sync_port: u16) -> std::io::Result<Self> {
        let route = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let forbidden = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let route_addr = route.local_addr()?;
        let forbidden_addr = forbidden.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        let tasks = vec![
            tokio::spawn(serve_route(route, client, evaluation_port, sync_port)),
            tokio::spawn(serve_forbidden(forbidden)),
        ];
        Ok(Self {
            route_addr,
            forbidden_addr,
            tasks,
        })
    }

    /// Port of the routing listener (the testbed's 9211).
    pub fn route_port(&self) -> u16 {
        self.route_addr.port()
    }

    /// Port of the 403 listener (the testbed's 9212).
    pub fn forbidden_port(&self) -> u16 {
        self.forbidden_addr.port()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Upstream port for an authority: the sync port when it mentions `sync`, else the evaluation port.
pub fn upstream_port(authority: &str, evaluation_port: u16, sync_port: u16) -> u16 {
    if authority.to_ascii_lowercase().contains("sync") {
        sync_port
    } else {
        evaluation_port
    }
}

async fn serve_route(
    listener: TcpListener,
    client: Client<HttpConnector, Incoming>,
    evaluation_port: u16,
    sync_port: u16,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let client = client.clone();
                async move {
                    Ok::<_, Infallible>(forward(&client, request, evaluation_port, sync_port).await)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http2_only()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    mut request: Request<Incoming>,
    evaluation_port: u16,
    sync_port: u16,
) -> Response<ProxyBody> {
    let authority = request
        .uri()
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let port = upstream_port(&authority, evaluation_port, sync_port);
    let path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let uri: Uri = match format!("http://127.0.0.1:{port}{path}").parse() {
        Ok(uri) => uri,
        Err(_) => return status_only(StatusCode::BAD_REQUEST),
    };
    *request.uri_mut() = uri;
    request.headers_mut().remove(http::header::HOST);
    match client.request(request).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(_) => status_only(StatusCode::BAD_GATEWAY),
    }
}

async fn serve_forbidden(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<Incoming>| async {
                Ok::<_, Infallible>(status_only(StatusCode::FORBIDDEN))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn status_only(status: StatusCode) -> Response<ProxyBody> {
    let body = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::upstream_port;

    #[test]
    fn authorities_route_like_the_testbed_envoy() {
        assert_eq!(upstream_port("sync.service", 1, 2), 2);
        assert_eq!(upstream_port("flagd-sync.service", 1, 2), 2);
        assert_eq!(upstream_port("sync.flagd.local", 1, 2), 2);
        assert_eq!(upstream_port("rpc.service", 1, 2), 1);
        assert_eq!(upstream_port("localhost:9211", 1, 2), 1);
    }
}
