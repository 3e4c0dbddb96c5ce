//! The deployment files under deploy/: the compose stack starts and serves
//! `/readyz` on PostgreSQL (`compose`), the systemd unit's hardening
//! (`systemd`), the Kustomize base and overlay render to valid manifests
//! (`kustomize`). One area: `cargo test -p errand-cli --test all deploy::`.

mod compose;
mod kustomize;
mod systemd;

use std::path::PathBuf;

/// The repository's deploy/ directory.
fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .canonicalize()
        .expect("deploy/ exists")
}
