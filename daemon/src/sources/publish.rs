//! What every source shares with the daemon ([`SourceContext`]), and the one path by which any source
//! turns a payload into published flags ([`SourceContext::publish`]).
//!
//! The path: on the blocking pool (so that a large document never stalls the request-serving threads),
//! check the payload is UTF-8, load it with the engine, optionally reshape the result (grpc's
//! `incrementalUpdates`), count the reload, replace this source's slot in the store and update the flag
//! count; then, back on the async side, log the schema warnings, release the readiness latch and log the
//! load. The reload is counted before the new snapshot is published, so whoever sees the snapshot sees
//! the count too. A payload that fails (or whose loading task dies) is counted as rejected and the source
//! keeps its last good flags.
//!
//! What it does not do: fetch, watch, or skip unchanged payloads (each source knows what "unchanged"
//! means for it and hashes its own content), or log a rejection (each source maps [`PublishError`] into
//! its own error type, which names its path, URL, target or resource).

use std::sync::Arc;

use flagpole_engine::{Flag, Format, LoadOptions, Loaded};

use crate::metrics::Metrics;
use crate::readiness::ReadyLatch;
use crate::store::Store;

/// Where a source sits and what it shares with the rest of the daemon.
#[derive(Debug)]
pub struct SourceContext {
    /// Position in the store (priority).
    pub index: usize,
    /// Identity string.
    pub identity: Arc<str>,
    /// The store.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness latch of this source.
    pub latch: ReadyLatch,
    /// Load options.
    pub options: LoadOptions,
    /// Where a remote source keeps its last good payload (with `--state-dir`); `None` for files.
    pub last_good: Option<super::last_good::LastGood>,
}

/// How a source words the two log lines of a good load.
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    /// Logged (as a warning) once per schema violation of a document that loaded anyway.
    pub violation: &'static str,
    /// Logged (as info) when the flags are published.
    pub loaded: &'static str,
}

/// What a good load published.
#[derive(Debug)]
pub struct Published<K = ()> {
    /// How many flags this source now has in the store.
    pub flags: usize,
    /// What the shaping step kept back for the source ([`SourceContext::publish_shaped`]).
    pub kept: K,
}

/// Why a payload was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The payload is not UTF-8.
    #[error(transparent)]
    NotUtf8(std::str::Utf8Error),
    /// The engine rejected the document.
    #[error(transparent)]
    Load(flagpole_engine::LoadError),
    /// The loading task did not finish (it panicked, or the runtime is shutting down).
    #[error(transparent)]
    Aborted(tokio::task::JoinError),
}

impl SourceContext {
    /// Loads `payload` as a `format` document and publishes its flags as this source's.
    pub async fn publish<P>(
        &mut self,
        wording: Wording,
        payload: P,
        format: Format,
    ) -> Result<Published, PublishError>
    where
        P: AsRef<[u8]> + Send + 'static,
    {
        self.publish_shaped(wording, payload, format, |loaded| (loaded.flags, ()))
            .await
    }

    /// A source's first fetch at start failed with `error`: it serves its last-known-good flags if it has
    /// some that load (`Ok`), else the error is given back to stop the start.
    pub async fn fall_back<E: std::fmt::Display>(
        &mut self,
        wording: Wording,
        error: E,
    ) -> Result<(), E> {
        if self.restore_last_good(wording, &error.to_string()).await {
            Ok(())
        } else {
            Err(error)
        }
    }

    /// At start, before the source has delivered anything: publishes its last-known-good payload from the
    /// state directory, if there is one that loads, and marks the source stale (metrics, `/readyz`, a
    /// warning). Returns whether it did; the source's first fresh payload replaces these flags.
    pub async fn restore_last_good(&mut self, wording: Wording, why: &str) -> bool {
        let Some(last_good) = self.last_good.clone() else {
            return false;
        };
        let Ok(Some(restored)) = tokio::task::spawn_blocking(move || last_good.load()).await else {
            return false;
        };
        let saved_at = restored.saved_at;
        match self
            .publish_inner(
                wording,
                restored.payload,
                restored.format,
                false,
                |loaded| (loaded.flags, ()),
            )
            .await
        {
            Ok(published) => {
                self.metrics.source_stale(&self.identity, saved_at);
                tracing::warn!(
                    source = %self.identity,
                    saved_at,
                    flags = published.flags,
                    reason = why,
                    "serving the source's last known good flags from the state directory until it answers"
                );
                true
            }
            Err(error) => {
                tracing::error!(source = %self.identity, %error, "the source's last known good flags do not load; not serving them");
                false
            }
        }
    }

    /// As [`publish`](Self::publish), but `shape` (run on the blocking pool) decides from the loaded
    /// document which flags to publish, and what to keep back for the source ([`Published::kept`]).
    pub async fn publish_shaped<P, K, S>(
        &mut self,
        wording: Wording,
        payload: P,
        format: Format,
        shape: S,
    ) -> Result<Published<K>, PublishError>
    where
        P: AsRef<[u8]> + Send + 'static,
        K: Send + 'static,
        S: FnOnce(Loaded) -> (Vec<Arc<Flag>>, K) + Send + 'static,
    {
        self.publish_inner(wording, payload, format, true, shape)
            .await
    }

    /// The one path: `save` keeps a good payload as the source's last known good (when it has a state
    /// directory).
    async fn publish_inner<P, K, S>(
        &mut self,
        wording: Wording,
        payload: P,
        format: Format,
        save: bool,
        shape: S,
    ) -> Result<Published<K>, PublishError>
    where
        P: AsRef<[u8]> + Send + 'static,
        K: Send + 'static,
        S: FnOnce(Loaded) -> (Vec<Arc<Flag>>, K) + Send + 'static,
    {
        // flagd's `flagSync` span, one per payload, with its outcome.
        let mut span = self
            .metrics
            .tracer()
            .and_then(|tracer| tracer.start(RELOAD_SPAN, crate::telemetry::Kind::Internal, None));
        if let Some(span) = &mut span {
            span.set("feature_flag.source", self.identity.to_string());
            span.set_int(
                "feature_flag.payload.size",
                i64::try_from(payload.as_ref().len()).unwrap_or(i64::MAX),
            );
        }
        let last_good = self.last_good.clone().filter(|_| save);
        let options = self.options;
        let (store, index) = (self.store.clone(), self.index);
        let (metrics, identity) = (self.metrics.clone(), self.identity.clone());
        let large = payload.as_ref().len() >= crate::memory::LARGE_PAYLOAD_BYTES;
        let work = tokio::task::spawn_blocking(move || {
            let text = std::str::from_utf8(payload.as_ref()).map_err(PublishError::NotUtf8)?;
            let mut loaded = flagpole_engine::parse_document(text, format, &options)
                .map_err(PublishError::Load)?;
            let warnings = std::mem::take(&mut loaded.warnings);
            let notes = std::mem::take(&mut loaded.notes);
            let (flags, kept) = shape(loaded);
            let count = flags.len();
            // Counted before the new snapshot is published, so whoever sees it sees the count too.
            metrics.source_reloaded(&identity);
            let before = store.snapshot().len();
            store.replace_source(index, flags);
            let after = store.snapshot().len();
            metrics.set_flag_count(after);
            if before.saturating_sub(after) >= crate::memory::LARGE_FLAG_DROP {
                crate::memory::request_release();
            }
            // After publishing: the flags are served first, the disk is written second.
            if let Some(last_good) = last_good {
                last_good.save(text, format);
            }
            Ok((count, (warnings, notes), kept))
        });
        let outcome = work
            .await
            .unwrap_or_else(|error| Err(PublishError::Aborted(error)));
        if large {
            // Building a large document allocates far more than it keeps, accepted or not.
            crate::memory::request_release();
        }
        match outcome {
            Ok((flags, (warnings, notes), kept)) => {
                // An expired or malformed `metadata.expires` is warned about once a day by
                // `crate::lifecycle`, not at every load.
                for note in notes
                    .iter()
                    .filter(|n| !n.path.ends_with("/metadata/expires"))
                {
                    tracing::warn!(source = %self.identity, %note, "flag document loaded with a problem");
                }
                for warning in &warnings {
                    tracing::warn!(source = %self.identity, %warning, "{}", wording.violation);
                }
                self.latch.release();
                if let Some(mut span) = span {
                    span.set("flagpole.reload.outcome", "loaded");
                    span.set_int(
                        "feature_flag.count",
                        i64::try_from(flags).unwrap_or(i64::MAX),
                    );
                }
                tracing::info!(source = %self.identity, flags, "{}", wording.loaded);
                Ok(Published { flags, kept })
            }
            Err(error) => {
                if let Some(mut span) = span {
                    span.set("flagpole.reload.outcome", "rejected");
                    span.fail(error.to_string());
                }
                self.metrics.source_rejected(&self.identity);
                if let Some(journal) = self.store.journal() {
                    let mut entry = crate::journal::Entry::new(
                        crate::journal::Kind::Rejected,
                        self.identity.clone(),
                        None,
                    );
                    entry.error = Some(error.to_string().into());
                    journal.record(vec![entry]);
                }
                Err(error)
            }
        }
    }
}

/// The span of one payload handed to the store (flagd's name).
const RELOAD_SPAN: &str = "flagSync";
