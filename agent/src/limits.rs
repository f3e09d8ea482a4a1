//! Process limits the agent needs: the soft `RLIMIT_NOFILE` raised to the hard
//! limit at start (through the `rlimit` crate), since every watched file, rotated
//! copy and inotify watch holds a descriptor and the usual soft limit is 1,024.
//! The systemd unit sets `LimitNOFILE=` so the hard limit is high there.

/// Raise the soft open-files limit to the hard limit; log what it is now.
/// Returns the soft limit in force afterwards (`None` when it cannot be read).
pub fn raise_nofile() -> Option<u64> {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            let (soft, hard) = before.unwrap_or((now, now));
            if now > soft {
                tracing::info!(
                    from = soft,
                    to = now,
                    hard,
                    "raised the open-files limit (RLIMIT_NOFILE)"
                );
            } else {
                tracing::info!(limit = now, hard, "open-files limit (RLIMIT_NOFILE)");
            }
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit (RLIMIT_NOFILE); many watched files may fail to open");
            before.map(|(soft, _)| soft)
        }
    }
}
