//! `errand logs RUN`: a run's trace, rendered, as JSON lines or raw, once or following.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use errand_core::Event;
use errand_runner::Paths;
use errand_store::{read_raw_lines, LogTail, Store};

use super::find;
use crate::args::LogsArgs;
use crate::render::Renderer;

pub async fn cmd_logs(
    store: &dyn Store,
    paths: &Paths,
    args: LogsArgs,
) -> Result<std::process::ExitCode> {
    let rec = find(store, &args.run).await?;
    let path = if args.raw {
        paths.raw(rec.id)
    } else {
        paths.events(rec.id)
    };
    let color = std::io::stdout().is_terminal();
    let mut renderer = Renderer::new(color);
    let out = std::io::stdout();
    let mut print = |line: &str, o: &mut std::io::StdoutLock| -> Result<()> {
        if args.raw || args.json {
            writeln!(o, "{line}")?;
        } else if let Ok(ev) = serde_json::from_str::<Event>(line) {
            for l in renderer.render(&ev) {
                writeln!(o, "{l}")?;
            }
        }
        Ok(())
    };
    if !args.follow {
        let mut o = out.lock();
        for line in read_raw_lines(&path)? {
            print(&line, &mut o)?;
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let mut tail = LogTail::new(&path);
    loop {
        let done = store.get_run(rec.id).await?.state.is_terminal();
        let lines = tail.poll()?;
        {
            let mut o = out.lock();
            for line in &lines {
                print(line, &mut o)?;
            }
            o.flush()?;
        }
        if done && lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
