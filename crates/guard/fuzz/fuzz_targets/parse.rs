//! `cargo +nightly fuzz run parse` (from crates/guard): arbitrary UTF-8
//! through the whole guard, plus the hook path with the text as a command.
#![no_main]

use errand_guard::{check, pretooluse_hook, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // The guard turns brush-parser panics into denials (catch_unwind);
    // libFuzzer's hook would abort on those too. Silence the hook: a panic
    // that escapes `check` still aborts (libfuzzer-sys catches it).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let policy = Policy::default();
    let _ = check(text, &policy);
    let stdin = format!(
        "{{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\",\"tool_input\":{{\"command\":{}}}}}",
        escape(text)
    );
    let _ = pretooluse_hook(&stdin, &policy);
    let _ = pretooluse_hook(text, &policy);
});

fn escape(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
