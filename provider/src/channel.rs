//! Building the gRPC channel from the options: host and port, `targetUri` (including flagd's
//! `envoy://host:port/authority` form), a unix socket, TLS with an optional custom CA, HTTP/2 keep-alive.
//!
//! The channel is lazy: nothing is dialled here, so building a provider never blocks and a daemon that is not
//! up yet is simply a stream that fails and is retried. It does not decide what a failure means; the
//! resolvers do.

use std::time::Duration;

use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use crate::FlagdOptions;

/// The gRPC metadata key that carries the selector (flagd reads it on every service).
pub const SELECTOR_HEADER: &str = "flagd-selector";

/// Why a channel could not be set up from the options.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// `targetUri` is not a form this provider understands.
    #[error("targetUri {uri:?}: {reason}")]
    InvalidTarget {
        /// The option value.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA certificate could not be read.
    #[error("certPath {path}: {source}")]
    Certificate {
        /// The option value.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The selector cannot be sent as a header value.
    #[error("selector {0:?} is not a valid header value")]
    InvalidSelector(String),
    /// tonic rejected the endpoint (bad URI or TLS settings).
    #[error("invalid endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
    /// No tokio runtime is running; the provider needs one for its background tasks.
    #[error("the provider must be created inside a tokio runtime")]
    NoRuntime,
}

/// Where to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `host:port` with an optional authority override.
    Tcp {
        host: String,
        port: u16,
        authority: Option<String>,
    },
    /// A unix socket path.
    Unix(String),
}

/// Parses the dial target: `socketPath` wins, then `targetUri`, then host and port.
pub(crate) fn target(options: &FlagdOptions) -> Result<Target, ChannelError> {
    if let Some(path) = &options.socket_path {
        return Ok(Target::Unix(path.to_string_lossy().into_owned()));
    }
    let Some(uri) = &options.target_uri else {
        return Ok(Target::Tcp {
            host: options.host.clone(),
            port: options.port,
            authority: None,
        });
    };
    let bad = |reason| ChannelError::InvalidTarget {
        uri: uri.clone(),
        reason,
    };
    if let Some(rest) = uri.strip_prefix("envoy://") {
        let (hostport, authority) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected envoy://host:port/authority"))?;
        let (host, port) =
            host_port(hostport).ok_or_else(|| bad("expected envoy://host:port/authority"))?;
        if authority.is_empty() {
            return Err(bad("the authority after the port is empty"));
        }
        return Ok(Target::Tcp {
            host,
            port,
            authority: Some(authority.trim_end_matches('/').to_owned()),
        });
    }
    if let Some(path) = uri
        .strip_prefix("unix://")
        .or_else(|| uri.strip_prefix("unix:"))
    {
        return Ok(Target::Unix(path.to_owned()));
    }
    let rest = uri
        .strip_prefix("dns:///")
        .or_else(|| uri.strip_prefix("dns:"))
        .or_else(|| uri.strip_prefix("http://"))
        .or_else(|| uri.strip_prefix("https://"))
        .unwrap_or(uri);
    let (host, port) =
        host_port(rest.trim_end_matches('/')).ok_or_else(|| bad("expected host:port"))?;
    Ok(Target::Tcp {
        host,
        port,
        authority: None,
    })
}

fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Builds the lazy channel.
pub(crate) fn channel(options: &FlagdOptions) -> Result<Channel, ChannelError> {
    let tls = options.tls || options.cert_path.is_some();
    let deadline = Duration::from_millis(options.deadline_ms.max(1));
    let endpoint = match target(options)? {
        Target::Unix(path) => Endpoint::from_shared(format!("unix://{path}"))?,
        Target::Tcp {
            host,
            port,
            authority,
        } => {
            let scheme = if tls { "https" } else { "http" };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{port}"))?;
            if let Some(authority) = &authority {
                let origin: Uri = format!("{scheme}://{authority}").parse().map_err(|_| {
                    ChannelError::InvalidTarget {
                        uri: options.target_uri.clone().unwrap_or_default(),
                        reason: "the authority is not a valid host",
                    }
                })?;
                endpoint = endpoint.origin(origin);
            }
            if tls {
                let mut config = ClientTlsConfig::new();
                if let Some(path) = &options.cert_path {
                    let pem = std::fs::read(path).map_err(|source| ChannelError::Certificate {
                        path: path.display().to_string(),
                        source,
                    })?;
                    config = config.ca_certificate(Certificate::from_pem(pem));
                } else {
                    config = config.with_enabled_roots();
                }
                if let Some(authority) = authority {
                    config = config.domain_name(authority);
                }
                endpoint = endpoint.tls_config(config)?;
            }
            endpoint
        }
    };
    let mut endpoint = endpoint.connect_timeout(deadline);
    if options.keep_alive_time_ms > 0 {
        endpoint = endpoint
            .http2_keep_alive_interval(Duration::from_millis(options.keep_alive_time_ms))
            .keep_alive_while_idle(true);
    }
    Ok(endpoint.connect_lazy())
}

/// The selector as a header value, validated once.
pub(crate) fn selector_header(
    options: &FlagdOptions,
) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, ChannelError> {
    match &options.selector {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ChannelError::InvalidSelector(s.clone())),
    }
}

/// Parses `fatalStatusCodes` names (`PERMISSION_DENIED`, also `PermissionDenied` or the number); unknown
/// names are logged and ignored.
pub(crate) fn fatal_codes(names: &[String]) -> Vec<Code> {
    names
        .iter()
        .filter_map(|name| {
            let code = parse_code(name);
            if code.is_none() {
                tracing::warn!(name, "unknown gRPC status code in fatalStatusCodes ignored");
            }
            code
        })
        .collect()
}

fn parse_code(name: &str) -> Option<Code> {
    let norm: String = name
        .trim()
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    if let Ok(n) = norm.parse::<i32>() {
        return (0..=16).contains(&n).then(|| Code::from_i32(n));
    }
    (0..=16)
        .map(Code::from_i32)
        .find(|code| format!("{code:?}").to_ascii_lowercase() == norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_uri(uri: &str) -> FlagdOptions {
        FlagdOptions {
            target_uri: Some(uri.to_owned()),
            ..FlagdOptions::default()
        }
    }

    #[test]
    fn envoy_target_dials_host_port_with_authority() {
        assert_eq!(
            target(&with_uri("envoy://localhost:9211/rpc.service")).ok(),
            Some(Target::Tcp {
                host: "localhost".into(),
                port: 9211,
                authority: Some("rpc.service".into())
            })
        );
        assert!(target(&with_uri("envoy://localhost/rpc.service")).is_err());
        assert!(target(&with_uri("envoy://localhost:9211/")).is_err());
    }

    #[test]
    fn plain_and_dns_targets() {
        let expect = Some(Target::Tcp {
            host: "flagd".into(),
            port: 8013,
            authority: None,
        });
        assert_eq!(target(&with_uri("dns:///flagd:8013")).ok(), expect);
        assert_eq!(target(&with_uri("flagd:8013")).ok(), expect);
        assert_eq!(
            target(&with_uri("unix:///tmp/s.sock")).ok(),
            Some(Target::Unix("/tmp/s.sock".into()))
        );
        assert!(target(&with_uri("path")).is_err());
    }

    #[test]
    fn fatal_code_names() {
        assert_eq!(
            fatal_codes(&[
                "PERMISSION_DENIED".into(),
                "Unauthenticated".into(),
                "5".into(),
                "bogus".into()
            ]),
            vec![
                Code::PermissionDenied,
                Code::Unauthenticated,
                Code::NotFound
            ]
        );
    }
}
