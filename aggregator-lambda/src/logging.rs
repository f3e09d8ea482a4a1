//! Log setup for both binaries: `tracing` events to stderr (the local
//! consumer) or stdout (Lambda, as JSON so CloudWatch Logs Insights can query
//! the fields of the per-window "who do I call" event). The level comes from
//! `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else `info`. Text is coloured only
//! when it goes to a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>): a file, a pipe or CloudWatch Logs get plain text.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Whether text written to a stream that is (`is_terminal`) or is not a
/// terminal may carry ANSI colour codes, given the value of `NO_COLOR`.
pub fn colour_allowed(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per event.
    Json,
    /// Human-readable text.
    Text,
}

/// Install the global subscriber; later calls are ignored.
pub fn init(format: LogFormat, to_stdout: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .map_err(|_| ())
                .and_then(|l| EnvFilter::try_new(l.to_lowercase()).map_err(|_| ()))
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (format, to_stdout) {
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stdout)
            .try_init(),
        (LogFormat::Json, false) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Text, true) => builder
            .with_ansi(colour_allowed(
                std::io::stdout().is_terminal(),
                no_color.as_deref(),
            ))
            .with_writer(std::io::stdout)
            .try_init(),
        (LogFormat::Text, false) => builder
            .with_ansi(colour_allowed(
                std::io::stderr().is_terminal(),
                no_color.as_deref(),
            ))
            .with_writer(std::io::stderr)
            .try_init(),
    };
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::colour_allowed;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
        assert!(!colour_allowed(false, Some(OsStr::new(""))));
    }
}
