//! Shared helpers: fast retry settings and waiting for a provider event.

use std::time::Duration;

use flagpole_provider::{
    FlagdOptionsBuilder, ProviderEvent, ProviderEventKind, ProviderEvents, ProviderState,
};
use tokio::sync::broadcast;

/// A generous bound for anything that should happen "soon"; a test fails, never hangs, when it does not.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Options with short back-off and a one-second grace period, and no process environment.
pub fn fast(builder: FlagdOptionsBuilder) -> flagpole_provider::FlagdOptions {
    builder
        .deadline_ms(1_000u64)
        .retry_backoff_ms(50u64)
        .retry_backoff_max_ms(200u64)
        .retry_grace_period(1u64)
        .build_with_env(|_| None)
        .expect("valid options")
}

/// Waits for the next event of `kind`, skipping others.
pub async fn next(
    rx: &mut broadcast::Receiver<ProviderEvent>,
    kind: ProviderEventKind,
) -> ProviderEvent {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(event) if event.kind == kind => return event,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    panic!("event channel closed while waiting for {kind:?}")
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind:?} event"))
}

/// Waits until the provider is in `state`.
pub async fn state(events: &ProviderEvents, state: ProviderState) {
    tokio::time::timeout(PATIENCE, events.wait_for(|s| s == state))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "provider never reached {state:?}; it is {:?}",
                events.state()
            )
        });
}
