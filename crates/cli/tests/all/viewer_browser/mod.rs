//! A small WebDriver client for the viewer's browser tests and benchmark:
//! chromedriver on a free loopback port driving Debian's headless Chromium
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `scripts/setup --tests`
//! installs them). It speaks the handful of W3C WebDriver commands the tests
//! need over the `reqwest` client the workspace already builds, which keeps
//! compile time low (a WebDriver crate would bring its own TLS stack).

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// Where screenshots go: `<target>/test-artifacts/viewer/`, the target
/// directory from `CARGO_TARGET_DIR` (when absolute) or the test binary's
/// location (`<target>/<profile>/deps/<binary>`).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("test-artifacts").join("viewer")
}

fn find(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    p.is_file().then_some(p)
}

/// Chromium and chromedriver, or why not. Missing browsers fail under CI
/// (`CI` set) and skip, with a printed reason, elsewhere.
pub fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let chromium = find("ERRAND_CHROMIUM", "/usr/bin/chromium");
    let driver = find("ERRAND_CHROMEDRIVER", "/usr/bin/chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let why = "headless Chromium is not installed (/usr/bin/chromium and /usr/bin/chromedriver; `scripts/setup --tests` installs Debian's chromium and chromium-driver)";
            assert!(
                std::env::var_os("CI").is_none(),
                "browser tests cannot run: {why}"
            );
            eprintln!("skipped: {why}");
            None
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Prefix of this test's screenshots.
    pub name: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, Chromium included: end them all.
        let pid = self.driver.id() as i32;
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium; `None` when they are not installed (outside CI).
    pub async fn launch(name: &str) -> Option<Browser> {
        let (chromium, driver_bin) = browser_paths()?;
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .map(|v| v["value"]["ready"] == true)
                    .unwrap_or(false),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.to_string_lossy(), "args": args},
            "timeouts": {"script": 120000, "pageLoad": 60000},
        }}});
        let mut b = Browser {
            http,
            session: String::new(),
            driver,
            _profile: profile,
            name: name.to_string(),
        };
        let v = b
            .raw(
                reqwest::Method::POST,
                &format!("{base}/session"),
                Some(caps),
            )
            .await
            .unwrap_or_else(|e| panic!("could not start a Chromium session: {e}"));
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        b.session = format!("{base}/session/{id}");
        Some(b)
    }

    async fn raw(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut rb = self.http.request(method, url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                v["value"]["error"].as_str().unwrap_or("error"),
                v["value"]["message"].as_str().unwrap_or("")
            ))
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        self.raw(method, &url, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Resizes the window, then says how wide the page's viewport is.
    pub async fn window_size(&self, width: u32, height: u32) -> f64 {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
        self.js("return window.innerWidth", vec![])
            .await
            .as_f64()
            .unwrap_or(0.0)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Like `js`, for a script that calls `arguments[arguments.length - 1](value)` when done.
    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls `script` until it returns something truthy; panics (after a screenshot) on timeout.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self
                .raw(
                    reqwest::Method::POST,
                    &format!("{}/execute/sync", self.session),
                    Some(json!({ "script": script, "args": [] })),
                )
                .await;
            let last = match v {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => v,
                Err(e) => Value::String(e),
            };
            if Instant::now() > deadline {
                let shot = self.screenshot("timeout").await;
                let text = self
                    .js("return document.body.innerText.slice(0, 3000)", vec![])
                    .await;
                panic!(
                    "gave up waiting for {what} (last: {last}); screenshot {}\npage text:\n{}",
                    shot.display(),
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's text contains `text`.
    pub async fn wait_text(&self, text: &str, timeout: Duration) {
        let script = format!(
            "return document.body.innerText.includes({})",
            serde_json::to_string(text).unwrap_or_default()
        );
        self.wait_for(&format!("the text {text:?}"), &script, timeout)
            .await;
    }

    /// Saves a screenshot as `<artifacts>/<name>[-<step>].png` and prints its path.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let dir = artifacts_dir();
        let _ = std::fs::create_dir_all(&dir);
        let file = if step.is_empty() {
            dir.join(format!("{}.png", self.name))
        } else {
            dir.join(format!("{}-{step}.png", self.name))
        };
        match self
            .raw(
                reqwest::Method::GET,
                &format!("{}/screenshot", self.session),
                None,
            )
            .await
        {
            Ok(v) => {
                let png = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or(""))
                    .unwrap_or_default();
                if std::fs::write(&file, png).is_ok() {
                    println!("screenshot: {}", file.display());
                }
            }
            Err(e) => eprintln!("no screenshot: {e}"),
        }
        file
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub async fn close(self) {
        let _ = self.raw(reqwest::Method::DELETE, &self.session, None).await;
    }
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
