//! `errand run --demo`: a whole run with the real Claude Code CLI and no API
//! key. errand starts its scripted model in-process, makes a small Python
//! project to work on, and replays a scenario in which the agent reads a file,
//! edits it, runs it and summarises.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use errand_model::Scenario;
use errand_proc::Cmd;

pub const PROMPT: &str =
    "Add a --version flag to hello.py that prints the version, and check that it works.";

pub const SCENARIO: &str = r#"{"steps": [
  {"read": "hello.py"},
  {"tool": "Edit", "input": {
      "file_path": "/workspace/hello.py",
      "old_string": "def main(argv):\n",
      "new_string": "VERSION = \"0.2.0\"\n\n\ndef main(argv):\n    if \"--version\" in argv:\n        print(f\"hello {VERSION}\")\n        return 0\n"}},
  {"shell": "python3 hello.py --version && python3 hello.py world"},
  {"shell": "git add hello.py && git commit -q -m 'Add a --version flag to hello.py' && git log --oneline -1"},
  {"text": "Added a --version flag to hello.py: `python3 hello.py --version` prints `hello 0.2.0`, and greeting still works."}
]}"#;

pub fn scenario() -> Result<Scenario> {
    Scenario::from_json(SCENARIO).context("the built-in demo scenario is invalid")
}

const HELLO: &str = "import sys\n\n\ndef main(argv):\n    name = argv[1] if len(argv) > 1 else \"world\"\n    print(f\"hello {name}\")\n    return 0\n\n\nif __name__ == \"__main__\":\n    sys.exit(main(sys.argv))\n";

/// Creates (afresh) the demo project under `dir` as a git repository and returns its path.
pub fn make_repo(dir: &Path) -> Result<PathBuf> {
    let repo = dir.join("demo-project");
    if repo.exists() {
        std::fs::remove_dir_all(&repo)
            .with_context(|| format!("removing old {}", repo.display()))?;
    }
    std::fs::create_dir_all(&repo)?;
    std::fs::write(repo.join("hello.py"), HELLO)?;
    std::fs::write(
        repo.join("README.md"),
        "# demo project\n\nA tiny program for errand's demo run.\n",
    )?;
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &[
            "-c",
            "user.name=errand demo",
            "-c",
            "user.email=demo@errand.invalid",
            "commit",
            "-q",
            "-m",
            "Initial commit",
        ],
    ] {
        let st = Cmd::new("git")
            .inherit_env(errand_git::HOST_ENV)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .status()
            .context("running git")?;
        if !st.success() {
            bail!(
                "git {} failed while creating the demo project",
                args.join(" ")
            );
        }
    }
    Ok(repo)
}
