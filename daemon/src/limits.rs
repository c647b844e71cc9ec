//! Process resource limits the daemon adjusts at start.
//!
//! What it owns: raising the soft open-file limit to the hard one (Go's runtime does the same for flagd,
//! so flagpole must not run out of descriptors earlier) and telling the listeners how many there are.
//!
//! What it does not do: decide the per-listener share (the runtime does).

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force; `None` when
/// unlimited or unknown (not Linux).
pub fn raise_open_files() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(%error, "cannot raise the open-file limit");
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
