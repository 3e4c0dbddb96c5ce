//! `errand logs --file FILE`: a trace file on this machine (Claude Code
//! stream-json or transcript, Codex `exec --json` or rollout, Gemini CLI,
//! OpenCode, errand's own event log) printed like a run's logs, without a
//! run or a database.
//!
//! stdout gets the events (rendered, or one JSON object per line with
//! `--json`, shaped like `errand logs RUN --json`); stderr gets the problems
//! met (`line 12 is not JSON: …`, a truncated last line) and a summary. The
//! exit status is 0 whenever the file could be read, problems or not; it is
//! non-zero when the file cannot be read or its format cannot be told.

use std::io::{BufReader, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::Utc;

use crate::render::Renderer;

pub fn cmd_logs_file(path: &Path, json: bool) -> Result<std::process::ExitCode> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trace = errand_trace::parse_reader(BufReader::new(file))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let Some(format) = trace.format else {
        let why = trace
            .problems
            .first()
            .map_or("could not tell the format of this file", |p| {
                p.message.as_str()
            });
        bail!("{}: {why}", path.display());
    };
    let now = Utc::now();
    {
        let color = std::io::stdout().is_terminal();
        let mut renderer = Renderer::new(color);
        let mut out = std::io::stdout().lock();
        for (i, ev) in trace.events.iter().enumerate() {
            let event = ev.to_event(i as u64 + 1, now);
            if json {
                writeln!(out, "{}", serde_json::to_string(&event)?)?;
            } else {
                for line in renderer.render(&event) {
                    writeln!(out, "{line}")?;
                }
            }
        }
        if !json {
            for line in renderer.flush() {
                writeln!(out, "{line}")?;
            }
        }
        out.flush()?;
    }
    let mut err = std::io::stderr().lock();
    for p in &trace.problems {
        writeln!(err, "{}: {}", path.display(), p.message)?;
    }
    let format = serde_json::to_value(format)?
        .as_str()
        .map_or_else(|| format!("{format:?}"), str::to_owned);
    let problems = match trace.problems.len() {
        0 => String::new(),
        1 => ", 1 problem".to_owned(),
        n => format!(", {n} problems"),
    };
    writeln!(
        err,
        "{}: {format}, {} lines, {} events{problems}",
        path.display(),
        trace.lines,
        trace.events.len()
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}
