//! Sandbox start-up: time from `spawn()` to the first byte of stdout of
//! `/bin/sh -c 'echo ready'`, per backend. "cold" is the first spawn of a fresh
//! backend (for docker: connecting to the engine, and the first container);
//! "warm" the median of the next five. Prints figures and the docker/local ratio.
//!
//!     cargo bench -p errand-sandbox --bench spawn
//!
//! The docker figures need a reachable engine and the agent image
//! (`errand sandbox prepare docker`); without them they are skipped.
//!
//! The modal row runs against the strict fake Modal server (its sandboxes
//! are bubblewrap processes on this machine), so it measures errand's side
//! only: the RPCs, shipping the run's files in, the exec and the output
//! stream; never Modal's own start-up. Its "cold" is a run's first spawn
//! (the Sandbox created and its files shipped), "warm" an exec in it.

use std::time::{Duration, Instant};

use errand_sandbox::{
    CommandLine, DockerConfig, DockerSandbox, Limits, LocalSandbox, Sandbox, SandboxSpec,
};
use tokio::io::AsyncReadExt;

const WARM_RUNS: usize = 5;

async fn first_byte(sb: &dyn Sandbox, spec: &SandboxSpec) -> Duration {
    let cmd = CommandLine::new("/bin/sh", ["-c", "echo ready"]);
    let t = Instant::now();
    let mut p = sb.spawn(spec, &cmd).await.expect("spawn");
    let mut out = p.take_stdout().expect("stdout");
    let mut byte = [0u8; 1];
    let n = out.read(&mut byte).await.expect("read");
    let took = t.elapsed();
    assert_eq!(n, 1, "no output");
    let _ = p.wait().await;
    took
}

/// (cold, median of the warm runs)
async fn measure(sb: &dyn Sandbox, spec: &SandboxSpec) -> (Duration, Duration) {
    let cold = first_byte(sb, spec).await;
    let mut warm = Vec::new();
    for _ in 0..WARM_RUNS {
        warm.push(first_byte(sb, spec).await);
    }
    warm.sort();
    (cold, warm[warm.len() / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SandboxSpec {
        name: "bench".into(),
        workspace: dir.path().join("workspace"),
        home: dir.path().join("home"),
        tmp: dir.path().join("tmp"),
        ro_mounts: vec![],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        limits: Limits {
            memory_bytes: Some(1 << 30),
            max_pids: Some(256),
            cpus: None,
            lifetime_secs: None,
        },
        network: Default::default(),
        entry: Vec::new(),
        layers: None,
    };
    println!(
        "sandbox start-up: spawn() to the first byte of `echo ready` (warm: median of {WARM_RUNS})"
    );

    let local = LocalSandbox::new();
    let local_warm = match local.check().await {
        Ok(()) => {
            let (cold, warm) = measure(&local, &spec).await;
            println!("  local   cold {:>10}   warm {:>10}", ms(cold), ms(warm));
            Some(warm)
        }
        Err(e) => {
            println!("  local   skipped: {e}");
            None
        }
    };

    let docker = DockerSandbox::new(DockerConfig {
        scope: "bench".into(),
        ..Default::default()
    });
    match docker.check().await {
        Ok(()) => {
            // A fresh backend, so "cold" includes connecting to the engine.
            let docker = DockerSandbox::new(docker.config().clone());
            let (cold, warm) = measure(&docker, &spec).await;
            println!("  docker  cold {:>10}   warm {:>10}", ms(cold), ms(warm));
            if let Some(l) = local_warm {
                println!(
                    "  docker/local (warm): {:.1}x",
                    warm.as_secs_f64() / l.as_secs_f64()
                );
            }
        }
        Err(e) => println!("  docker  skipped: {e}"),
    }

    match modal_on_fake().await {
        Some((fake, modal)) => {
            let (cold, warm) = measure(&modal, &spec).await;
            modal.release(&spec.name).await;
            println!(
                "  modal   cold {:>10}   warm {:>10}   (the fake Modal server: errand's side only)",
                ms(cold),
                ms(warm)
            );
            if let Some(l) = local_warm {
                println!(
                    "  modal/local (warm): {:.1}x",
                    warm.as_secs_f64() / l.as_secs_f64()
                );
            }
            let broken = fake.violations();
            assert!(broken.is_empty(), "the fake's rules: {broken:?}");
        }
        None => println!("  modal   skipped: bubblewrap (the fake's sandboxes) is not available"),
    }
}

/// The fake Modal server (no injected faults: this measures the clean
/// path) and a backend pointed at it; `None` without bubblewrap.
async fn modal_on_fake() -> Option<(errand_modal::fake::Fake, errand_modal::ModalSandbox)> {
    if LocalSandbox::new().check().await.is_err() {
        return None;
    }
    let opts = errand_modal::fake::FakeOptions {
        inject: false,
        ..Default::default()
    };
    let fake = errand_modal::fake::Fake::start(opts, "bwrap".into())
        .await
        .expect("the fake Modal server");
    let (id, secret) = fake.token();
    let modal = errand_modal::ModalSandbox::with_profile(
        errand_modal::ModalConfig {
            image: "errand-agent:test".into(),
            scope: "bench".into(),
            ..Default::default()
        },
        Ok(errand_modal::Profile {
            server_url: fake.url(),
            token_id: id,
            token_secret: secret,
            ..Default::default()
        }),
    );
    Some((fake, modal))
}
