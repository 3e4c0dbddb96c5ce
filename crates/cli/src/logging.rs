//! errand's own log on stderr: `ERRAND_LOG` picks what (an `EnvFilter`),
//! `--log-format` / `ERRAND_LOG_FORMAT` / `log.format` how: `text` (coloured
//! only when stderr is a terminal, never in a file or pipe) or `json` (one
//! object per line, with the fields of the spans it happened in, e.g. a run's id).

use std::io::IsTerminal;

use errand_runner::Paths;

/// The log formats `--log-format` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Starts logging. `flag` is `--log-format` (or `ERRAND_LOG_FORMAT`, which clap
/// reads); without it, `log.format` from the configuration file. `service`:
/// a long-running process, which logs what it does (one-shot commands only problems).
pub fn init(flag: Option<LogFormat>, service: bool) {
    let format =
        flag.unwrap_or_else(
            || match crate::config::log_format(&Paths::from_env()).as_deref() {
                Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
                _ => LogFormat::Text,
            },
        );
    let filter = tracing_subscriber::EnvFilter::try_from_env("ERRAND_LOG")
        .unwrap_or_else(|_| (if service { "info" } else { "warn" }).into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}
