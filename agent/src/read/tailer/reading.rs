//! A pass over a flow's open readings (a part of [`super::Tailer`]): the
//! new lines of each file, at most [`super::READ_BUDGET`] bytes of one per
//! pass; a truncation found there ([`decision::after_truncation`]: the file
//! cut short, or a new generation whose old reading becomes displaced and
//! whose copy is looked for); and closing the readings whose file left its
//! path, once drained and quiet ([`decision::may_close`]).

use crate::read::decision::{self, Close, Truncated};
use crate::read::watcher::Polled;
use crate::shared::identity::Fingerprint;
use crate::shared::sink::{LineSink, SinkClosed};

use super::{report_loss, DisplacedReading, Pass, Tailer, DECIDING_BYTES, READ_BUDGET};

impl Tailer {
    pub(super) fn poll_all(&mut self, sink: &mut dyn LineSink) -> Result<Pass, SinkClosed> {
        let mut pass = Pass::default();
        for i in 0..self.watchers.len() {
            let w = &mut self.watchers[i];
            let from_start = w.offset() == 0 && w.pending() == 0 && !w.orphaned;
            match w.poll(sink, self.settings.max_line, READ_BUDGET) {
                Ok(Ok(Polled::Read(n))) => {
                    pass.more_waiting |= n >= READ_BUDGET;
                    if n > 0 {
                        pass.read_any = true;
                        // The first bytes of a live file's generation: an
                        // earlier one may have been written, copied and
                        // truncated before this reader saw any of it (its
                        // size never passed 0 when anyone looked).
                        self.truncated_since_look |= from_start;
                        self.ledger.set_processed_at(w.source, w.offset(), w.mark());
                        self.ledger.update(w.source, w.fingerprint, None);
                    }
                }
                Ok(Ok(Polled::Truncated { size })) => {
                    let read = w.offset();
                    let unread = w.seen_size.saturating_sub(read + w.pending() as u64);
                    // Few first bytes cannot tell the file from its next
                    // generation (a line's address and time).
                    let same_start = w.fingerprint.len as usize >= DECIDING_BYTES
                        && w.fingerprint.matches(w.file()).unwrap_or(false);
                    let facts = decision::Truncation {
                        size,
                        read,
                        same_start,
                    };
                    self.ledger.set_processed(w.source, read);
                    self.ledger.close(w.source);
                    self.truncated_since_look = true;
                    pass.read_any = true;
                    pass.more_waiting = true;
                    let cut = decision::after_truncation(&facts) == Truncated::Cut;
                    if cut {
                        tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), read, size, "file truncated to a size other than 0 (truncate -s?); reading it again from the start: the lines it kept are sent again");
                    } else {
                        tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), read, size, "file truncated (copytruncate?); reading it again from the start");
                    }
                    self.seen.remember(w.fingerprint);
                    if cut && unread > 0 {
                        report_loss(
                            &self.settings.flow,
                            self.stats.as_deref(),
                            &w.path,
                            unread,
                            "the file was cut short (truncated) before they were read",
                        );
                    } else if w.fingerprint.len > 0 {
                        let mut d = DisplacedReading::new(
                            w.fingerprint,
                            read,
                            w.path.clone(),
                            Some(w.source),
                        );
                        d.unread = unread;
                        d.tail = w.mark();
                        self.displaced.push(d);
                        // Look for its copy at once.
                        self.last_discover = None;
                    }
                    let fp = Fingerprint::of(w.file()).unwrap_or(Fingerprint::EMPTY);
                    let source =
                        self.ledger
                            .open(&self.settings.flow, w.key, fp, w.path.clone(), 0);
                    if w.target.is_some() {
                        self.ledger.set_target(source, w.target.clone());
                    }
                    w.restart(source, fp);
                }
                Ok(Err(closed)) => return Err(closed),
                Err(e) => {
                    tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), error = %e, "read failed; will retry");
                }
            }
        }
        Ok(pass)
    }

    /// Close files that left their path (rotated away or deleted) or were
    /// read as copies, once drained and quiet ([`decision::may_close`]). A
    /// partial last line is shipped first: nobody will complete it.
    pub(super) fn close_quiet(&mut self, sink: &mut dyn LineSink) -> Result<(), SinkClosed> {
        let times = decision::CloseTimes {
            quiet: self.settings.rotate_quiet,
            renamed_quiet: self.settings.renamed_quiet,
        };
        let mut i = 0;
        while i < self.watchers.len() {
            let w = &mut self.watchers[i];
            if !(w.orphaned || w.copy) {
                i += 1;
                continue;
            }
            let deleted = w.is_deleted();
            let reading = decision::Reading {
                orphaned: w.orphaned,
                deleted,
                copy: w.copy,
                drained: w
                    .size()
                    .map(|s| s <= w.offset() + w.pending() as u64)
                    .unwrap_or(true),
                quiet_for: w.last_growth.elapsed(),
            };
            if decision::may_close(&reading, &times) == Close::Keep {
                i += 1;
                continue;
            }
            if w.pending() > 0 {
                tracing::warn!(flow = %self.settings.flow, path = %w.path.display(), bytes = w.pending(), "closing file whose last line has no newline; shipping it as a line");
                w.flush_partial(sink)?;
                self.ledger.set_processed(w.source, w.offset());
            }
            tracing::info!(flow = %self.settings.flow, path = %w.path.display(), offset = w.offset(), deleted, "closed rotated file");
            self.ledger.close(w.source);
            self.seen.remember(w.fingerprint);
            self.watchers.swap_remove(i);
        }
        Ok(())
    }
}
