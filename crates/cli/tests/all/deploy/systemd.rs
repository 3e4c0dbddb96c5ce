//! deploy/systemd: the unit's hardening is there and systemd accepts every
//! line of it (`systemd-analyze verify`, which warns about unknown keys and
//! bad values), its environment example names only variables errand knows,
//! and bubblewrap still makes its namespaces under the unit's restrictions
//! (no new privileges, no capabilities, an unprivileged user).
//!
//! Not run here: the unit under a real systemd (the test machines have no
//! systemd as PID 1).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use errand_test_support::{bubblewrap, need, on_path};

use crate::common::*;

/// `[Service]`'s settings: each key with its values (a key may repeat).
fn service(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = "";
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            let (k, v) = line.split_once('=').expect("key=value");
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

fn unit_text() -> String {
    std::fs::read_to_string(super::deploy_dir().join("systemd/errand.service"))
        .expect("read errand.service")
}

#[test]
fn the_unit_is_hardened_and_leaves_bubblewrap_its_namespaces() {
    let s = service(&unit_text());
    let one = |k: &str| -> &str {
        let v = s.get(k).unwrap_or_else(|| panic!("{k} is not set"));
        v.last().expect("a value")
    };
    for (k, want) in [
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ] {
        assert_eq!(one(k), want, "{k}");
    }
    assert_ne!(one("User"), "root", "errand runs as its own user");

    // ERRAND_HOME is the one writable place, and the state directory systemd makes.
    let home = s["Environment"]
        .iter()
        .find_map(|e| e.strip_prefix("ERRAND_HOME="))
        .expect("ERRAND_HOME is set");
    assert!(
        one("ReadWritePaths").split_whitespace().any(|p| p == home),
        "ReadWritePaths lacks {home}"
    );
    assert_eq!(
        Path::new("/var/lib").join(one("StateDirectory")),
        Path::new(home)
    );
    // The private runtime directory errand's sockets go in: XDG_RUNTIME_DIR.
    let runtime = s["Environment"]
        .iter()
        .find_map(|e| e.strip_prefix("XDG_RUNTIME_DIR="))
        .expect("XDG_RUNTIME_DIR is set");
    assert_eq!(
        Path::new("/run").join(one("RuntimeDirectory")),
        Path::new(runtime)
    );
    assert_eq!(one("RuntimeDirectoryMode"), "0700");

    // Every namespace bubblewrap makes (crates/sandbox/src/local.rs) is allowed.
    let ns: Vec<&str> = one("RestrictNamespaces").split_whitespace().collect();
    for n in ["user", "mnt", "pid", "ipc", "uts", "net"] {
        assert!(ns.contains(&n), "RestrictNamespaces forbids {n}: {ns:?}");
    }
    let families = one("RestrictAddressFamilies");
    for f in ["AF_UNIX", "AF_INET", "AF_NETLINK"] {
        assert!(families.contains(f), "RestrictAddressFamilies lacks {f}");
    }
    // Secrets come from the environment file, never the unit or the command line.
    assert!(s.contains_key("EnvironmentFile"));
    let exec = one("ExecStart");
    assert!(exec.ends_with("errand serve"), "{exec}");
    for e in &s["Environment"] {
        assert!(
            e.starts_with("ERRAND_HOME=") || e.starts_with("XDG_RUNTIME_DIR="),
            "a setting in the unit itself: {e} (put it in the environment file)"
        );
    }
}

#[test]
fn systemd_accepts_every_line_of_the_unit() {
    if !need("systemd-analyze", on_path("systemd-analyze")) {
        return;
    }
    // verify wants ExecStart's program to exist: this test's errand.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("errand.service");
    let text = unit_text().replace(
        "ExecStart=/usr/local/bin/errand",
        &format!("ExecStart={}", errand_bin()),
    );
    assert!(
        text.contains(errand_bin()),
        "ExecStart is /usr/local/bin/errand"
    );
    std::fs::write(&unit, text).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // Warnings about the unit name its file; other units' noise does not count.
    let about: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("errand.service"))
        .collect();
    assert!(
        out.status.success() && about.is_empty(),
        "systemd-analyze verify:\n{err}"
    );
}

#[test]
fn the_environment_example_names_only_known_settings() {
    let text = std::fs::read_to_string(super::deploy_dir().join("systemd/errand.env.example"))
        .expect("read errand.env.example");
    // Every ERRAND_ line, commented or not, with a stand-in for an empty value.
    let vars: Vec<(String, String)> = text
        .lines()
        .map(|l| l.trim_start_matches('#'))
        .filter(|l| l.starts_with("ERRAND_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = if v.is_empty() { "x" } else { v };
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(vars.iter().any(|(k, _)| k == "ERRAND_DATABASE_URL"));
    let mut env = Env::new();
    for (k, v) in &vars {
        env = env.var(k, v);
    }
    let out = env.run(&["config", "show"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "errand config show:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (k, _) in &vars {
        assert!(
            shown.contains(&format!("environment ({k})")),
            "errand does not know {k}:\n{shown}"
        );
    }
}

#[test]
fn bubblewrap_works_without_privileges_or_capabilities() {
    if !need("bubblewrap", bubblewrap()) || !need("setpriv", on_path("setpriv")) {
        return;
    }
    // As the unit runs it: no new privileges, an empty bounding set, and (when
    // this test may switch) an unprivileged uid, with every namespace errand asks for.
    let mut c = Command::new("setpriv");
    c.args(["--no-new-privs", "--bounding-set=-all", "--inh-caps=-all"]);
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } == 0 {
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    }
    let out = c
        .args([
            "bwrap",
            "--die-with-parent",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--unshare-cgroup-try",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--",
            "sh",
            "-c",
            "grep NoNewPrivs /proc/self/status; grep CapBnd /proc/self/status",
        ])
        .output()
        .expect("run setpriv");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bubblewrap under no-new-privileges: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
}
