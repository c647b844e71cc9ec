//! Changing the overrides: set, clear, lift on expiry, restore at start — each change written to the state
//! directory (when there is one) before it is published, and logged with its actor and reason
//! (`docs/admin.md#overrides`). What an override is and does is `crate::overrides`'.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::journal::{Entry, Kind};
use crate::overrides::{Override, OverrideError, Overrides};
use crate::state_dir::{Loaded, StateDir};
use crate::store::Store;
use crate::unix_now;

/// The overrides' file in the state directory.
pub const STATE_FILE: &str = "overrides.json";

/// Why a change to the overrides did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The override itself is refused.
    #[error(transparent)]
    Refused(#[from] OverrideError),
    /// The state file could not be written; nothing changed.
    #[error("cannot write the state file: {0}")]
    Persist(#[source] std::io::Error),
}

/// Setting, clearing, expiring and persisting the overrides of one store.
#[derive(Debug, Clone)]
pub struct OverrideControl {
    store: Arc<Store>,
    state: Option<StateDir>,
    wake: Arc<Notify>,
}

impl OverrideControl {
    /// Control over `store`'s overrides, persisted in `state` when given.
    pub fn new(store: Arc<Store>, state: Option<StateDir>) -> Self {
        OverrideControl {
            store,
            state,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Puts the persisted overrides back at start (a corrupt file is reported and set aside).
    pub fn restore(&self) {
        let Some(state) = &self.state else { return };
        let restored = match state.read_json::<Overrides>(STATE_FILE) {
            Loaded::Missing => return,
            Loaded::Found(overrides) => overrides,
            Loaded::SetAside { set_aside, error } => {
                tracing::error!(
                    file = %set_aside.display(),
                    %error,
                    "the overrides state file is corrupt; set aside, starting without overrides"
                );
                return;
            }
        };
        let _ = self.store.update_overrides(|overrides, _| {
            *overrides = restored;
            let expired = overrides.expire(unix_now());
            tracing::info!(
                overrides = overrides.0.len(),
                expired = expired.len(),
                "restored overrides from the state directory"
            );
            Ok::<_, ControlError>(true)
        });
    }

    /// Sets (or replaces) the override of `key`.
    pub fn set(&self, key: &str, candidate: Override) -> Result<(), ControlError> {
        self.store.update_overrides(|overrides, snapshot| {
            overrides.check(snapshot, key, &candidate, unix_now())?;
            let (actor, reason) = (
                candidate.actor.clone(),
                candidate.reason.clone().unwrap_or_default(),
            );
            overrides.0.insert(key.to_owned(), candidate);
            self.persist(overrides)?;
            // The journal logs the change, one line per change.
            self.journal(Kind::OverrideSet, key, Some(&actor), Some(&reason));
            Ok::<_, ControlError>(true)
        })?;
        self.wake.notify_one();
        Ok(())
    }

    /// Removes the override of `key`; `None` when there was none.
    pub fn clear(&self, key: &str, actor: &str) -> Result<Option<Override>, ControlError> {
        let mut removed = None;
        self.store.update_overrides(|overrides, _| {
            removed = overrides.0.remove(key);
            if removed.is_none() {
                return Ok::<_, ControlError>(false);
            }
            self.persist(overrides)?;
            self.journal(Kind::OverrideCleared, key, Some(actor), None);
            Ok(true)
        })?;
        self.wake.notify_one();
        Ok(removed)
    }

    /// The overrides in force.
    pub fn list(&self) -> Overrides {
        self.store.overrides()
    }

    /// Lifts overrides when they expire, until `stop`.
    pub async fn run_expiry(self, stop: CancellationToken) {
        loop {
            let now = unix_now();
            let next = self.store.overrides().next_expiry();
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                Duration::from_secs(at.saturating_sub(now))
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => continue,
                () = tokio::time::sleep(wait) => {}
            }
            let result = self.store.update_overrides(|overrides, _| {
                let expired = overrides.expire(unix_now());
                for key in &expired {
                    self.journal(Kind::OverrideExpired, key, None, None);
                }
                if expired.is_empty() {
                    return Ok(false);
                }
                self.persist(overrides)?;
                Ok::<_, ControlError>(true)
            });
            if let Err(error) = result {
                tracing::error!(%error, "cannot lift expired overrides; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    fn journal(&self, kind: Kind, key: &str, actor: Option<&str>, reason: Option<&str>) {
        if let Some(journal) = self.store.journal() {
            let mut entry = Entry::new(kind, "admin".into(), Some(key.into()));
            entry.actor = actor.map(Box::from);
            entry.reason = reason.filter(|r| !r.is_empty()).map(Box::from);
            journal.record(vec![entry]);
        }
    }

    fn persist(&self, overrides: &Overrides) -> Result<(), ControlError> {
        match &self.state {
            None => Ok(()),
            Some(state) => state
                .write_json(STATE_FILE, overrides)
                .map_err(ControlError::Persist),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::Action;
    use flagpole_engine::{Format, LoadOptions, parse_document};

    fn store() -> Arc<Store> {
        let store = Arc::new(Store::new([Arc::from("f.json")]));
        let text = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}"#;
        let flags = parse_document(text, Format::Json, &LoadOptions::default())
            .expect("loads")
            .flags;
        store.replace_source(0, flags);
        store
    }

    #[test]
    fn a_state_file_that_cannot_be_written_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state");
        // The disk "fails": the state file's name is taken by a directory, so the rename fails.
        std::fs::create_dir(dir.path().join(STATE_FILE)).expect("dir");
        let store = store();
        let control = OverrideControl::new(store.clone(), Some(state));
        let result = control.set(
            "f",
            Override {
                action: Action::Disable,
                reason: None,
                actor: "t".to_owned(),
                set_at: 0,
                expires_at: None,
            },
        );
        assert!(
            matches!(result, Err(ControlError::Persist(_))),
            "{result:?}"
        );
        assert!(control.list().0.is_empty());
        let flag = store
            .snapshot()
            .get("f", &flagpole_engine::Selector::All)
            .cloned()
            .expect("flag");
        assert_eq!(flag.state, flagpole_engine::FlagState::Enabled);
    }
}
