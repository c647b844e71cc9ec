//! Sending OTLP to a collector: gRPC (tonic, the collector's own service definitions) or HTTP/protobuf
//! (`POST <endpoint>` with a protobuf body), with the configured headers, a deadline per export, and TLS
//! from `--otel-ca-path`/`--otel-cert-path`/`--otel-key-path` (or `OTEL_EXPORTER_OTLP_*CERTIFICATE`),
//! read again every `--otel-reload-interval` (`docs/observability.md#tls-to-the-collector`).
//!
//! An export that fails is reported to the caller, which drops the batch and counts it: nothing is
//! retried, so a collector that is down costs one failed connection attempt per batch and no memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use rustls::pki_types::pem::PemObject;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The largest certificate or key file read (PEM bundles are kilobytes).
pub const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

/// The largest collector response body read over HTTP (it only carries a partial-success note).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How OTLP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`.
    Grpc,
    /// `http/protobuf`.
    HttpProtobuf,
}

/// The PEM files of the collector connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) the collector's certificate is checked against (else the system's roots).
    pub ca: Option<PathBuf>,
    /// Client certificate and its key, presented to the collector.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Where one signal goes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// gRPC: the collector's address; HTTP: the full URL posted to.
    pub endpoint: Uri,
    /// gRPC or HTTP/protobuf.
    pub protocol: Protocol,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`); values are marked sensitive.
    pub headers: HeaderMap,
    /// The deadline of one export (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub timeout: Duration,
    /// TLS files (used when the endpoint is `https`).
    pub tls: TlsFiles,
}

impl Destination {
    /// The endpoint without credentials, for logs.
    pub fn display(&self) -> String {
        flagpole_engine::redact_credentials(&self.endpoint.to_string())
    }
}

/// What an export could not do (the message never holds header values).
pub type ExportError = String;

type HttpClient = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

enum Client {
    Grpc(Channel),
    Http(Box<HttpClient>),
}

/// One signal's connection to the collector.
pub struct Exporter {
    destination: Destination,
    reload_interval: Duration,
    /// The client and the TLS file contents it was built from; `None` until it can be built.
    client: Option<(Client, Vec<Vec<u8>>)>,
    checked: Instant,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("endpoint", &self.destination.display())
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter to `destination`; its TLS files are read now and every `reload_interval`.
    pub fn new(destination: Destination, reload_interval: Duration) -> Exporter {
        let mut exporter = Exporter {
            destination,
            reload_interval,
            client: None,
            checked: Instant::now(),
        };
        if let Err(error) = exporter.rebuild() {
            tracing::warn!(endpoint = %exporter.destination.display(), %error, "cannot set up the OpenTelemetry exporter yet; retrying at each export");
        }
        exporter
    }

    /// Sends spans.
    pub async fn export_traces(
        &mut self,
        request: ExportTraceServiceRequest,
    ) -> Result<(), ExportError> {
        match self.client()? {
            Client::Grpc(channel) => {
                let mut client = TraceServiceClient::new(channel.clone());
                let request = self.grpc_request(request);
                let response = client.export(request).await.map_err(grpc_error)?;
                if let Some(partial) = response.into_inner().partial_success
                    && partial.rejected_spans > 0
                {
                    return Err(format!(
                        "the collector rejected {} spans: {}",
                        partial.rejected_spans, partial.error_message
                    ));
                }
                Ok(())
            }
            Client::Http(client) => {
                let client = (**client).clone();
                self.post(client, request.encode_to_vec()).await
            }
        }
    }

    /// Sends metric points.
    pub async fn export_metrics(
        &mut self,
        request: ExportMetricsServiceRequest,
    ) -> Result<(), ExportError> {
        match self.client()? {
            Client::Grpc(channel) => {
                let mut client = MetricsServiceClient::new(channel.clone());
                let request = self.grpc_request(request);
                let response = client.export(request).await.map_err(grpc_error)?;
                if let Some(partial) = response.into_inner().partial_success
                    && partial.rejected_data_points > 0
                {
                    return Err(format!(
                        "the collector rejected {} data points: {}",
                        partial.rejected_data_points, partial.error_message
                    ));
                }
                Ok(())
            }
            Client::Http(client) => {
                let client = (**client).clone();
                self.post(client, request.encode_to_vec()).await
            }
        }
    }

    /// The client, rebuilt first when the reload interval has passed and a TLS file changed, or when
    /// there is none yet.
    fn client(&mut self) -> Result<&Client, ExportError> {
        if self.client.is_none() || self.checked.elapsed() >= self.reload_interval {
            self.checked = Instant::now();
            if let Err(error) = self.rebuild() {
                if self.client.is_none() {
                    return Err(error);
                }
                // Keep the working connection; a broken file is reported again at the next check.
                tracing::warn!(endpoint = %self.destination.display(), %error, "cannot reload the OpenTelemetry TLS files; keeping the current connection");
            }
        }
        Ok(&self.client.as_ref().expect("built above").0)
    }

    /// Reads the TLS files and builds a new client when they differ from the current one's.
    fn rebuild(&mut self) -> Result<(), ExportError> {
        let tls = &self.destination.tls;
        // Bounded, non-blocking, regular files only: a FIFO or a device given as a certificate must not
        // stall the export task.
        let read = |path: &PathBuf| {
            flagpole_engine::file::read_regular_file(path, MAX_TLS_FILE_BYTES)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let mut contents = Vec::new();
        if let Some(ca) = &tls.ca {
            contents.push(read(ca)?);
        }
        if let Some((cert, key)) = &tls.client {
            contents.push(read(cert)?);
            contents.push(read(key)?);
        }
        if self
            .client
            .as_ref()
            .is_some_and(|(_, current)| *current == contents)
        {
            return Ok(());
        }
        let client = match self.destination.protocol {
            Protocol::Grpc => Client::Grpc(self.grpc_channel(&contents)?),
            Protocol::HttpProtobuf => Client::Http(Box::new(self.http_client(&contents)?)),
        };
        if self.client.is_some() {
            tracing::info!(endpoint = %self.destination.display(), "OpenTelemetry TLS files changed; new collector connection");
        }
        self.client = Some((client, contents));
        Ok(())
    }

    fn https(&self) -> bool {
        self.destination.endpoint.scheme_str() == Some("https")
    }

    fn grpc_channel(&self, contents: &[Vec<u8>]) -> Result<Channel, ExportError> {
        let destination = &self.destination;
        let mut endpoint = Endpoint::from(destination.endpoint.clone())
            .timeout(destination.timeout)
            .connect_timeout(destination.timeout);
        if self.https() {
            let mut tls = ClientTlsConfig::new();
            let mut files = contents.iter();
            tls = match destination.tls.ca {
                Some(_) => tls.ca_certificate(Certificate::from_pem(files.next().expect("read"))),
                None => tls.with_enabled_roots(),
            };
            if destination.tls.client.is_some() {
                let cert = files.next().expect("read");
                let key = files.next().expect("read");
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("TLS settings: {e}"))?;
        }
        Ok(endpoint.connect_lazy())
    }

    fn http_client(&self, contents: &[Vec<u8>]) -> Result<HttpClient, ExportError> {
        let mut files = contents.iter();
        let roots = match self.destination.tls.ca {
            Some(_) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in
                    rustls::pki_types::CertificateDer::pem_slice_iter(files.next().expect("read"))
                {
                    roots
                        .add(cert.map_err(|e| format!("CA certificate: {e}"))?)
                        .map_err(|e| format!("CA certificate: {e}"))?;
                }
                Some(roots)
            }
            None => None,
        };
        let builder = crate::transport::tls::client_config_builder(roots, "an https collector")
            .map_err(|e| e.to_string())?;
        let config = if self.destination.tls.client.is_some() {
            let chain =
                rustls::pki_types::CertificateDer::pem_slice_iter(files.next().expect("read"))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(files.next().expect("read"))
                .map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        } else {
            builder.with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.destination.timeout));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        for (name, value) in &self.destination.headers {
            if let Ok(name) = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
                && let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_bytes())
            {
                request.metadata_mut().insert(name, value);
            }
        }
        request.set_timeout(self.destination.timeout);
        request
    }

    async fn post(&self, client: HttpClient, body: Vec<u8>) -> Result<(), ExportError> {
        let destination = &self.destination;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(destination.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        request.headers_mut().extend(destination.headers.clone());
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| crate::error_chain(&e))?;
            let status = response.status();
            // Read (a bounded amount of) the body so the connection can be reused.
            let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        };
        tokio::time::timeout(destination.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", destination.timeout))?
    }
}

fn grpc_error(status: tonic::Status) -> ExportError {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn destination(endpoint: &str, protocol: Protocol, tls: TlsFiles) -> Destination {
        Destination {
            endpoint: endpoint.parse().unwrap(),
            protocol,
            headers: HeaderMap::new(),
            timeout: Duration::from_secs(2),
            tls,
        }
    }

    #[tokio::test]
    async fn a_fifo_given_as_a_certificate_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let tls = TlsFiles {
            ca: Some(fifo),
            client: None,
        };
        let mut exporter = Exporter::new(
            destination("https://127.0.0.1:1", Protocol::Grpc, tls),
            Duration::from_secs(3600),
        );
        let error = exporter
            .export_traces(ExportTraceServiceRequest::default())
            .await
            .expect_err("no usable CA");
        assert!(error.contains("not a regular file"), "{error}");
    }

    #[tokio::test]
    async fn an_http_collector_that_refuses_or_rambles_fails_the_export_boundedly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_owned(),
                // 200 with an endless body: read up to the limit, then the export is done.
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
            ] {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buffer = vec![0u8; 65536];
                let _ = stream.read(&mut buffer).await;
                stream.write_all(answer.as_bytes()).await.unwrap();
                if answer.contains("chunked") {
                    let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
                    while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                }
            }
        });
        let mut exporter = Exporter::new(
            destination(
                &format!("http://{addr}/v1/traces"),
                Protocol::HttpProtobuf,
                TlsFiles::default(),
            ),
            Duration::from_secs(3600),
        );
        let refused = exporter
            .export_traces(ExportTraceServiceRequest::default())
            .await
            .expect_err("503");
        assert!(refused.contains("503"), "{refused}");
        exporter
            .export_traces(ExportTraceServiceRequest::default())
            .await
            .expect("a 200 counts even when its body never ends (read up to the limit)");
    }
}
