//! The command line and what its commands do beyond running the agent.
//!
//! [`args`] is the clap definition of every command; [`cli`] runs what it
//! parses; [`manpage`] renders the man page and shell completions from the
//! same definition; [`status`] is `tailrace status`; [`import`] is
//! `tailrace import-kinesis-agent`; [`preflight`] is `tailrace check --live`.
//! `run` and `replay` themselves are `crate::runtime`'s.

pub mod args;
pub mod cli;
pub mod import;
pub mod manpage;
pub mod preflight;
pub mod status;
