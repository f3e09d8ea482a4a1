//! Which of the names of one file (hard links, symbolic links) its reading
//! goes by ([`name_for`]): one inode is one reading.

/// One of the names discovery found for a file (an inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    /// The reading goes by this name now.
    pub current: bool,
    /// The name is a symbolic link.
    pub symlink: bool,
}

/// Which of a file's names (in discovery's sorted order) its reading goes
/// by: the one it goes by already, while that still leads to it (discovery
/// never flips between two names of one file); else the first that is not
/// a symbolic link (the file's own name, which stays when a link is moved
/// to the next file); else the first.
pub fn name_for(names: &[Name]) -> usize {
    names
        .iter()
        .position(|n| n.current)
        .or_else(|| names.iter().position(|n| !n.symlink))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_one_reading_one_name() {
        let n = |current, symlink| Name { current, symlink };
        let rows: Vec<(&str, Vec<Name>, usize)> = vec![
            ("one name", vec![n(false, false)], 0),
            (
                "the name it goes by, while it leads to it (no flipping)",
                vec![n(false, false), n(true, false)],
                1,
            ),
            (
                "a new file: its own name, not the link to it (cronolog --symlink)",
                vec![n(false, true), n(false, false)],
                1,
            ),
            (
                "two hard links (rotatelogs -L): the first",
                vec![n(false, false), n(false, false)],
                0,
            ),
            (
                "only links: the first",
                vec![n(false, true), n(false, true)],
                0,
            ),
        ];
        for (name, names, want) in rows {
            assert_eq!(name_for(&names), want, "{name}");
        }
    }
}
