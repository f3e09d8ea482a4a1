//! What reached the stream, as the oracle reads it: how often each line id
//! was shipped, and the records around a line a seed misses.

use super::*;

/// How often each id is on `stream`.
/// A line without an id is an error (nobody wrote it), except the few
/// bytes a `truncate -s N` left of a line at the end of a file that then
/// closed: the reader ships a last partial line as a line, as it must.
pub(super) async fn shipped(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<HashMap<usize, usize>> {
    let records = read_stream(kinesis, stream).await?;
    let mut counts = HashMap::new();
    for l in tailrace_tests::raw_lines(&records) {
        match id_of(l) {
            Some(id) => *counts.entry(id).or_insert(0) += 1,
            None if is_cut_fragment(l) => {}
            None => bail!("a line nobody wrote: {}", String::from_utf8_lossy(l)),
        }
    }
    Ok(counts)
}

/// Whether `l` is what [`World::truncate`] can leave of a line: at most 8
/// of its first bytes (`10.2.X.Y`).
pub(super) fn is_cut_fragment(l: &[u8]) -> bool {
    l.len() <= 8
        && b"10.2.".starts_with(&l[..l.len().min(5)])
        && l.iter().all(|b| b.is_ascii_digit() || *b == b'.')
}

/// Each record on the stream as (first line's id, lines), in stream order:
/// a failing seed shows what was shipped around the lines it misses.
pub(super) async fn stream_layout(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<(Option<usize>, usize)>> {
    Ok(read_stream(kinesis, stream)
        .await?
        .iter()
        .map(|r| {
            let mut lines = tailrace_wire::raw::lines(&r.data);
            let first = lines.next().and_then(id_of);
            (first, 1 + lines.count())
        })
        .collect())
}
