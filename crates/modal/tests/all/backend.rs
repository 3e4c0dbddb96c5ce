//! One run's life on the Modal backend: its files shipped in, execs whose
//! output arrives whole across a broken stream, a second exec that sees the
//! first one's work, the environment through a Secret, network_access,
//! kill and orphan clean-up; every rule of the fake kept, its injected
//! faults (throttling, Unavailable, a broken stream, an Unauthenticated
//! router, expiring tokens) survived.

use std::path::Path;
use std::time::Duration;

use errand_modal::fake::{Fake, FakeOptions};
use errand_modal::{ModalConfig, ModalSandbox, Profile};
use errand_sandbox::{CommandLine, Egress, Limits, NetworkPolicy, Sandbox, SandboxSpec};
use tokio::io::AsyncReadExt;

async fn fake() -> Option<Fake> {
    if !errand_test_support::need("bubblewrap", errand_test_support::bubblewrap()) {
        return None;
    }
    let opts = FakeOptions {
        token_life: Duration::from_secs(2),
        ..Default::default()
    };
    Some(Fake::start(opts, "bwrap".into()).await.expect("fake Modal"))
}

fn backend(f: &Fake, scope: &str) -> ModalSandbox {
    let (id, secret) = f.token();
    let profile = Profile {
        server_url: f.url(),
        token_id: id,
        token_secret: secret,
        ..Default::default()
    };
    ModalSandbox::with_profile(
        ModalConfig {
            image: "errand-agent:test".into(),
            scope: scope.into(),
            timeout_secs: 600,
            ..Default::default()
        },
        Ok(profile),
    )
}

fn spec(root: &Path, name: &str) -> SandboxSpec {
    for d in ["workspace", "home", "tmp", "ro"] {
        std::fs::create_dir_all(root.join(d)).expect("dir");
    }
    std::fs::write(root.join("workspace/hello.txt"), "from the host\n").expect("file");
    std::fs::write(root.join("ro/tool.sh"), "echo tool\n").expect("file");
    SandboxSpec {
        name: name.into(),
        workspace: root.join("workspace"),
        home: root.join("home"),
        tmp: root.join("tmp"),
        ro_mounts: vec![(root.join("ro"), "/opt/errand/harness".into())],
        env: vec![
            ("RUN_VALUE".into(), "s3cret-value".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ],
        limits: Limits {
            memory_bytes: Some(1 << 30),
            max_pids: None,
            cpus: Some(1.5),
            lifetime_secs: None,
        },
        network: NetworkPolicy::Open,
        entry: Vec::new(),
        layers: None,
    }
}

async fn sh(sb: &ModalSandbox, spec: &SandboxSpec, script: &str) -> (Option<i32>, Vec<u8>, String) {
    let mut p = sb
        .spawn(spec, &CommandLine::new("/bin/sh", ["-c", script]))
        .await
        .expect("spawn");
    let (mut out, mut err) = (Vec::new(), String::new());
    let mut so = p.take_stdout().expect("stdout");
    let mut se = p.take_stderr().expect("stderr");
    let (a, b) = tokio::join!(so.read_to_end(&mut out), se.read_to_string(&mut err));
    a.expect("read stdout");
    b.expect("read stderr");
    let exit = p.wait().await.expect("wait");
    (exit.code, out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_modal_keeps_every_rule_of_the_fake() {
    let Some(f) = fake().await else { return };
    let sb = backend(&f, "scope-a");
    sb.check().await.expect("check");
    let dir = tempfile::tempdir().expect("tmp");
    let spec = spec(dir.path(), "run1");

    // Output larger than one message, across the stream the fake breaks.
    let (code, out, _) = sh(
        &sb,
        &spec,
        "cat /workspace/hello.txt; seq 1 200000; echo \"$RUN_VALUE\"",
    )
    .await;
    assert_eq!(code, Some(0));
    let mut expected = b"from the host\n".to_vec();
    for i in 1..=200_000 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    expected.extend_from_slice(b"s3cret-value\n");
    assert!(
        out == expected,
        "the output arrived with a gap or a repeat ({} bytes, {} expected)",
        out.len(),
        expected.len()
    );

    // The second exec is in the same Modal Sandbox: it sees the first one's work.
    let (code, _, _) = sh(
        &sb,
        &spec,
        "echo agent work > /workspace/new.txt && test ! -w /opt/errand/harness/tool.sh",
    )
    .await;
    assert_eq!(code, Some(0), "the read-only mount is read-only inside");
    // Tokens live 2 s here: the calls after this need a fresh one.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (code, out, err) = sh(&sb, &spec, "cat /workspace/new.txt; echo oops >&2; exit 3").await;
    assert_eq!(
        (code, out.as_slice(), err.as_str()),
        (Some(3), &b"agent work\n"[..], "oops\n")
    );
    assert!(
        !dir.path().join("workspace/new.txt").exists(),
        "the agent's files stay in the sandbox"
    );
    assert!(
        f.token_fetches() >= 2,
        "the auth token was refreshed ({} fetches)",
        f.token_fetches()
    );

    assert_eq!(f.running().len(), 1);
    let tags = &f.running()[0].1;
    assert!(
        tags.contains(&("errand-run".into(), "run1".into())),
        "{tags:?}"
    );
    sb.release("run1").await;
    assert!(
        f.running().is_empty(),
        "release terminates the run's sandbox"
    );

    assert_eq!(
        f.injected(),
        vec![
            "app-unavailable",
            "create-throttled",
            "image-stream-ends",
            "router-unauthenticated",
            "stdout-stream-broken"
        ],
        "every injected fault happened"
    );
    assert_eq!(f.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_terminates_the_sandbox_and_orphans_are_cleaned_up() {
    let Some(f) = fake().await else { return };
    let sb = backend(&f, "scope-b");
    let orphan = f.plant(
        "errand",
        &[("errand-run", "gone"), ("errand-scope", "scope-b")],
    );
    let other = f.plant(
        "errand",
        &[("errand-run", "gone"), ("errand-scope", "someone-else")],
    );
    let live = f.plant(
        "errand",
        &[("errand-run", "alive"), ("errand-scope", "scope-b")],
    );
    let removed = sb
        .cleanup_orphans(&["alive".into()])
        .await
        .expect("cleanup");
    assert_eq!(removed, vec![orphan]);
    let running: Vec<String> = f.running().into_iter().map(|(id, _)| id).collect();
    assert!(
        running.contains(&other) && running.contains(&live),
        "{running:?}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let mut spec = spec(dir.path(), "run2");
    spec.network = NetworkPolicy::Isolated(Egress {
        allow: vec![],
        protected: vec![],
        bridge: errand_sandbox::Bridge {
            exe: "/bin/true".into(),
            args: vec![],
        },
    });
    let mut p = sb
        .spawn(
            &spec,
            &CommandLine::new("/bin/sh", ["-c", "echo started; sleep 600"]),
        )
        .await
        .expect("spawn");
    assert!(
        p.notices.iter().any(|n| n.contains("network_access")),
        "{:?}",
        p.notices
    );
    let mut so = p.take_stdout().expect("stdout");
    let mut first = [0u8; 8];
    so.read_exact(&mut first).await.expect("first line");
    assert_eq!(&first, b"started\n");
    // Kill ends the sandbox without waiting out its `sleep 600` (the limit
    // only detects a hang; that it ended is checked on the fake below).
    tokio::time::timeout(Duration::from_secs(300), p.kill())
        .await
        .expect("kill waited for the sandbox's own end");
    assert!(!f
        .running()
        .iter()
        .any(|(_, tags)| tags.contains(&("errand-run".into(), "run2".into()))));
    assert!(
        f.networks().iter().any(|(_, blocked)| *blocked),
        "an empty allowlist is BLOCKED"
    );
    assert_eq!(f.violations(), Vec::<String>::new());
}
