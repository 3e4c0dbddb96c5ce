//! errand's own log on stderr: `ERRAND_LOG` picks what (an `EnvFilter`),
//! `--log-format` / `ERRAND_LOG_FORMAT` / `log.format` how: `text` (coloured
//! only when stderr is a terminal, never in a file or pipe) or `json` (one
//! object per line, with the fields of the spans it happened in, e.g. a run's id).

use std::io::IsTerminal;

use errand_runner::Paths;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

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
    let filter = EnvFilter::try_from_env("ERRAND_LOG")
        .unwrap_or_else(|_| (if service { "info" } else { "warn" }).into());
    match format {
        LogFormat::Json => json(filter, std::io::stderr).init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}

/// One JSON object per line, each with the current span's fields (`span`) and
/// those of every enclosing span (`spans`).
fn json<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_fields_of_their_spans() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = json(EnvFilter::new("info"), move || out.clone());
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("run", run = %"01JRUN", worker = "w1");
            let _in = span.enter();
            tracing::info!(step = 2, "cloned");
            tracing::debug!("filtered out");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let l = &lines[0];
        assert_eq!(l["fields"]["message"], "cloned");
        assert_eq!(l["fields"]["step"], 2);
        assert_eq!(l["span"]["run"], "01JRUN");
        assert_eq!(l["spans"][0]["worker"], "w1");
        assert!(!text.contains('\u{1b}'));
    }
}
