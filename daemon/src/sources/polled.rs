//! What the two polling sources (http, object stores) keep between polls and do alike: skip a payload
//! identical to the last one, remember why a payload was rejected (its repeat, or a `304` for it, is a
//! failure again), count failures in a row, and report the data overdue when no poll was good for longer
//! than the source promised.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flagpole_engine::Format;
use sha1::{Digest, Sha1};

use super::publish::{PublishError, SourceContext, Wording};

/// A polling source's memory of its last payloads.
#[derive(Debug)]
pub struct PollState {
    /// SHA-1 of the last payload parsed (accepted or not).
    last_hash: Option<[u8; 20]>,
    /// Why that payload was rejected, when it was.
    rejected: Option<String>,
    /// Failures since the last good poll.
    pub consecutive_failures: u64,
    /// When the data was last good (or when the source started).
    last_good: Instant,
    overdue: bool,
}

/// What [`PollState::apply`] did with a payload.
#[derive(Debug)]
pub enum Applied {
    /// Only whitespace: ignored (flagd: "configuration deleted"); the last flags stay.
    Empty,
    /// The same bytes as the last payload: nothing parsed (see [`PollState::still_rejected`]).
    Unchanged,
    /// Loaded and published.
    Published,
    /// Not loaded; the source keeps its last good flags.
    Rejected(PublishError),
}

impl Default for PollState {
    fn default() -> Self {
        PollState {
            last_hash: None,
            rejected: None,
            consecutive_failures: 0,
            last_good: Instant::now(),
            overdue: false,
        }
    }
}

impl PollState {
    /// Why the payload the upstream still serves was rejected, if it was.
    pub fn still_rejected(&self) -> Option<&str> {
        self.rejected.as_deref()
    }

    /// Publishes `body` through `context` unless it is empty or the last payload again.
    pub async fn apply(
        &mut self,
        context: &mut SourceContext,
        wording: Wording,
        body: Bytes,
        format: Format,
    ) -> Applied {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Applied::Empty;
        }
        let hash: [u8; 20] = Sha1::digest(&body).into();
        if self.last_hash == Some(hash) {
            return Applied::Unchanged;
        }
        self.last_hash = Some(hash);
        match context.publish(wording, body, format).await {
            Ok(_) => {
                self.rejected = None;
                Applied::Published
            }
            Err(error) => {
                self.rejected = match &error {
                    // Not judged: parse it again next time.
                    PublishError::Aborted(_) => {
                        self.last_hash = None;
                        None
                    }
                    other => Some(other.to_string()),
                };
                Applied::Rejected(error)
            }
        }
    }

    /// Records one poll's outcome in the source's metrics, and the data's overdue state (logged when it
    /// changes; `what` names the source in the log).
    pub fn record(
        &mut self,
        good: bool,
        context: &SourceContext,
        overdue_after: Duration,
        what: &str,
    ) {
        let identity = &context.identity;
        if good {
            self.consecutive_failures = 0;
            self.last_good = Instant::now();
            context.metrics.source_fetch_succeeded(identity);
        } else {
            self.consecutive_failures += 1;
            context.metrics.source_fetch_failed(identity);
        }
        let overdue = self.last_good.elapsed() > overdue_after;
        if overdue != self.overdue {
            self.overdue = overdue;
            context.metrics.source_overdue(identity, overdue);
            if overdue {
                tracing::warn!(source = %identity, since_secs = self.last_good.elapsed().as_secs(), "{what} data is overdue: no good poll for longer than three intervals plus the poll deadline");
            } else {
                tracing::info!(source = %identity, "{what} data is current again");
            }
        }
    }
}
