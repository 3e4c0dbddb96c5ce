//! Every real trace file among the fixtures opens with no unrecognised
//! line, except lines of a type no parser knows (named here, each with why).

use errand_core::EventKind;
use errand_trace::parse_trace;

/// The trace fixtures (every file under `tests/fixtures/` is one).
fn fixtures() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read_to_string(&path).expect("text"))
        })
        .collect();
    out.sort();
    out
}

/// The `type` (and `subtype`) of a raw line, to name it.
fn line_type(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let part = |k: &str| v.get(k).and_then(|t| t.as_str()).unwrap_or("").to_owned();
    format!("{}/{}", part("type"), part("subtype"))
}

#[test]
fn every_fixture_opens_without_unrecognised_lines() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 18, "{}", fixtures.len());
    let mut unknown = Vec::new();
    for (name, text) in &fixtures {
        let t = parse_trace(text);
        assert!(t.format.is_some(), "{name}: {:?}", t.problems);
        assert!(t.problems.is_empty(), "{name}: {:?}", t.problems);
        for e in &t.events {
            if let EventKind::Raw { line } = &e.kind {
                unknown.push(format!("{name}:{} {}", e.line, line_type(line)));
            }
        }
    }
    assert_eq!(unknown, Vec::<String>::new());
}

fn images(text: &str) -> Vec<(String, bool, u64, Option<String>)> {
    parse_trace(text)
        .kinds()
        .filter_map(|k| match k {
            EventKind::Image {
                media_type,
                data,
                bytes,
                tool_id,
            } => Some((media_type.clone(), data.is_some(), *bytes, tool_id.clone())),
            _ => None,
        })
        .collect()
}

/// Real Claude Code 2.x captures: its `Read` of a PNG, in the stream and in
/// the session transcript.
#[test]
fn claude_codes_images_are_images_of_their_tool_result() {
    for name in ["claude_stream_image.jsonl", "claude_transcript_image.jsonl"] {
        let text = fixtures()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .expect(name);
        assert_eq!(
            images(&text),
            [(
                "image/png".to_owned(),
                true,
                74,
                Some("toolu_0000".to_owned())
            )],
            "{name}"
        );
    }
    // In a user message (the block's documented shape), and one by URL is never fetched.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=";
    let line = format!(
        r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"text","text":"look"}},{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{png}"}}}},{{"type":"image","source":{{"type":"url","url":"https://example.com/x.png"}}}}]}},"session_id":"s"}}"#
    );
    let t = parse_trace(&line);
    let kinds: Vec<&str> = t.kinds().map(EventKind::name).collect();
    assert_eq!(kinds, ["user_message", "image", "note"]);
}

/// Local transcripts carry tokens but no cost: it is estimated when the
/// model is priced.
#[test]
fn local_transcripts_are_priced_when_their_model_is_known() {
    for name in [
        "claude_transcript_edits.jsonl",
        "claude_transcript_image.jsonl",
        "codex_rollout_patch.jsonl",
        "gemini_chat_0.61_tools.jsonl",
        "gemini_chat_0.20_tools.json",
    ] {
        let text = fixtures()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .expect(name);
        // The capture's model (gpt-5.5) is not in the price table: the same
        // rollout on gpt-5 is priced, as it is unpriced as it was.
        let text = if name.starts_with("codex") {
            assert!(!priced(&text), "gpt-5.5 has no price");
            text.replace("\"gpt-5.5\"", "\"gpt-5\"")
        } else {
            text
        };
        let t = parse_trace(&text);
        let usages: Vec<_> = t
            .kinds()
            .filter_map(|k| match k {
                EventKind::Usage(u) => Some(u),
                _ => None,
            })
            .collect();
        assert!(!usages.is_empty(), "{name}");
        assert!(
            usages.iter().all(|u| u.cost_usd.is_some_and(|c| c > 0.0)),
            "{name}: {usages:?}"
        );
    }
}

fn priced(text: &str) -> bool {
    parse_trace(text)
        .kinds()
        .any(|k| matches!(k, EventKind::Usage(u) if u.cost_usd.is_some()))
}
