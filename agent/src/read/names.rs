//! The names of one file: discovery may find an inode under several paths
//! (a hard link made by `rotatelogs -L`, a symbolic link made by cronolog's
//! `--symlink`, both matched by one glob). A file is read once whatever its
//! names ([`group`]), by one name that does not flip from one discovery to
//! the next ([`choose`], after [`decision::name_for`]); and a reading found
//! through a symbolic link also remembers the file's own path
//! ([`own_path`]), where it is looked for once the link points elsewhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::read::decision::{self, Name};
use crate::shared::identity::FileKey;

/// One file as discovery found it.
#[derive(Debug)]
pub struct Found {
    /// Its identity.
    pub key: FileKey,
    /// Its names, sorted.
    pub names: Vec<PathBuf>,
    /// Its modification time.
    pub modified: Option<std::time::SystemTime>,
}

/// The regular files among `paths` (sorted), grouped by identity in the
/// order each was first found; each group's paths stay sorted.
pub fn group(paths: &[PathBuf]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut at: HashMap<FileKey, usize> = HashMap::new();
    for path in paths {
        // Known files by stat alone: no open per file per discovery.
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let key = FileKey::of_meta(&meta);
        match at.get(&key) {
            Some(&i) => out[i].names.push(path.clone()),
            None => {
                at.insert(key, out.len());
                out.push(Found {
                    key,
                    names: vec![path.clone()],
                    modified: meta.modified().ok(),
                });
            }
        }
    }
    out
}

/// Which of `names` (one file's, sorted) a reading now going by `current`
/// goes by ([`decision::name_for`]). Links are told apart only when there
/// is a choice to make.
pub fn choose<'a>(names: &'a [PathBuf], current: Option<&Path>) -> &'a Path {
    if names.len() == 1 {
        return &names[0];
    }
    let facts: Vec<Name> = names
        .iter()
        .map(|p| Name {
            current: current == Some(p.as_path()),
            symlink: std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()),
        })
        .collect();
    &names[decision::name_for(&facts)]
}

/// Files named `name` exactly `depth` levels below `base` (`depth` 1: in
/// it), visiting at most `limit` directory entries: the other days of a
/// file read through a link into dated directories (cronolog's
/// `YYYY/MM/DD/access.log`, `depth` 4), created and left while nobody
/// looked.
pub fn shaped_like(
    base: &Path,
    depth: usize,
    name: &std::ffi::OsStr,
    limit: usize,
) -> Vec<PathBuf> {
    let mut level = vec![base.to_path_buf()];
    let mut visited = 0;
    for _ in 1..depth {
        let mut next = Vec::new();
        for dir in &level {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                visited += 1;
                if visited > limit {
                    return Vec::new();
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    next.push(e.path());
                }
            }
        }
        level = next;
    }
    let mut out: Vec<PathBuf> = level
        .into_iter()
        .map(|d| d.join(name))
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    out.sort();
    out
}

/// The own path of file `key` when `path` reaches it through a symbolic
/// link (of the file or of a directory on the way); `None` when it is
/// `path`, or when `path` leads to another file now (the link moved on).
pub fn own_path(path: &Path, key: FileKey) -> Option<PathBuf> {
    let own = std::fs::canonicalize(path).ok().filter(|p| p != path)?;
    std::fs::metadata(&own)
        .is_ok_and(|m| FileKey::of_meta(&m) == key)
        .then_some(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_one_file_known_by_its_own_name() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tailrace-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("2026/12/01"))?;
        let real = dir.join("2026/12/01/access.log");
        std::fs::write(&real, b"a line\n")?;
        let link = dir.join("access.log");
        std::os::unix::fs::symlink(&real, &link)?;
        let hard = dir.join("access.log.hard");
        std::fs::hard_link(&real, &hard)?;
        let other = dir.join("other.log");
        std::fs::write(&other, b"x\n")?;
        let mut paths = vec![link.clone(), hard.clone(), other.clone(), dir.join("2026")];
        paths.sort();
        let groups = group(&paths);
        assert_eq!(groups.len(), 2, "{groups:?}");
        let names = &groups[0].names;
        assert_eq!(names, &vec![link.clone(), hard.clone()]);
        assert_eq!(choose(names, None), hard.as_path(), "not the symlink");
        assert_eq!(choose(names, Some(&link)), link.as_path(), "no flipping");
        let key = FileKey::of(&std::fs::File::open(&real)?)?;
        assert_eq!(own_path(&link, key), Some(std::fs::canonicalize(&real)?));
        assert_eq!(own_path(&std::fs::canonicalize(&real)?, key), None);
        let other_key = FileKey::of(&std::fs::File::open(&other)?)?;
        assert_eq!(own_path(&link, other_key), None, "the link moved on");
        std::fs::create_dir_all(dir.join("2026/12/02"))?;
        std::fs::write(dir.join("2026/12/02/access.log"), b"b\n")?;
        assert_eq!(
            shaped_like(&dir, 4, std::ffi::OsStr::new("access.log"), 100),
            vec![real.clone(), dir.join("2026/12/02/access.log")]
        );
        assert!(shaped_like(&dir, 4, std::ffi::OsStr::new("access.log"), 2).is_empty());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
