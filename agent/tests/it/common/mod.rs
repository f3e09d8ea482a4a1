//! Helpers for the agent's integration tests that drive real system tools.

pub mod codec;
pub mod httpd;
