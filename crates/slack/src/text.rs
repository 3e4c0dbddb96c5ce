//! Turning Slack message text into plain text.
//!
//! Slack encodes `&`, `<` and `>` as `&amp;`, `&lt;`, `&gt;` and uses
//! `<…>` for links and mentions (`<https://x|label>`, `<@U123>`,
//! `<#C123|general>`, `<!here>`); apps on phones and Macs also turn quotes
//! into typographic ones. See
//! <https://api.slack.com/reference/surfaces/formatting#escaping>.

/// Decodes Slack markup into plain text:
///
/// - `<https://x|label>` and `<https://x>` → `https://x` (the URL is what the
///   user meant; the label is usually a shortened copy of it);
///   `<mailto:a@b|a@b>` → `a@b`;
/// - `<@U123|ann>` → `@ann`, `<@U123>` → `@U123`; `<#C1|general>` → `#general`;
///   `<!here>` → `@here`; `<!date^…|fallback>` → `fallback`;
/// - `&lt;` `&gt;` `&amp;` → `<` `>` `&`;
/// - typographic quotes → ASCII quotes; non-breaking spaces → spaces;
///   zero-width spaces are removed.
pub fn normalize(text: &str) -> String {
    unescape_entities(&plain_quotes(&decode_markup(text)))
}

/// Replaces `&lt;`, `&gt;` and `&amp;` (the only entities Slack produces).
pub fn unescape_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Replaces typographic quotes with ASCII ones, non-breaking spaces with
/// spaces, and drops zero-width spaces.
pub fn plain_quotes(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}'))
        .map(|c| match c {
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{00AB}' | '\u{00BB}' => '"',
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => '\'',
            '\u{00A0}' | '\u{2007}' | '\u{202F}' => ' ',
            other => other,
        })
        .collect()
}

/// Decodes `<…>` links and mentions (see [`normalize`]); leaves entities alone.
pub fn decode_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(['>', '<']) {
            Some(close) if after.as_bytes()[close] == b'>' => {
                out.push_str(&decode_one(&after[..close]));
                rest = &after[close + 1..];
            }
            // No closing `>` (or another `<` first): keep the `<` literally.
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_one(inner: &str) -> String {
    let (target, label) = match inner.split_once('|') {
        Some((t, l)) => (t, Some(l).filter(|l| !l.is_empty())),
        None => (inner, None),
    };
    if let Some(id) = target.strip_prefix('@') {
        return format!("@{}", label.unwrap_or(id));
    }
    if let Some(id) = target.strip_prefix('#') {
        return format!("#{}", label.unwrap_or(id));
    }
    if let Some(special) = target.strip_prefix('!') {
        return match label {
            Some(l) => l.to_string(),
            None => format!("@{special}"),
        };
    }
    if let Some(addr) = target.strip_prefix("mailto:") {
        return label.unwrap_or(addr).to_string();
    }
    if target.is_empty() {
        return label.unwrap_or_default().to_string();
    }
    target.to_string()
}

/// Removes one leading user mention (`<@U123>` or `<@U123|name>`) and the
/// whitespace after it; returns the rest trimmed.
pub fn strip_leading_mention(text: &str) -> &str {
    let trimmed = text.trim_start();
    if let Some(after) = trimmed.strip_prefix("<@") {
        if let Some(close) = after.find('>') {
            let id = after[..close].split('|').next().unwrap_or_default();
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return after[close + 1..].trim();
            }
        }
    }
    trimmed.trim_end()
}

/// Escapes `&`, `<` and `>` as Slack requires for user-supplied text in
/// messages (<https://api.slack.com/reference/surfaces/formatting#escaping>),
/// so it cannot form links or mentions such as `<!channel>`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
    out
}

/// Truncates to at most `max_chars` characters, ending with `…` when cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    if max_chars == 0 {
        return String::new();
    }
    let keep = max_chars.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_links_mentions_and_entities() {
        let cases = [
            ("<https://github.com/o/r|o/r>", "https://github.com/o/r"),
            (
                "see <https://x.y/a?b=1&amp;c=2>",
                "see https://x.y/a?b=1&c=2",
            ),
            ("<mailto:a@b.c|a@b.c>", "a@b.c"),
            ("<@U123|ann> and <@W9>", "@ann and @W9"),
            ("<#C1|general>", "#general"),
            ("<!here> <!subteam^S1|@devs>", "@here @devs"),
            ("a &lt;b&gt; &amp;lt;", "a <b> &lt;"),
            ("“quoted” ‘single’", "\"quoted\" 'single'"),
            ("a\u{00A0}b\u{200B}c", "a bc"),
            ("unclosed < here", "unclosed < here"),
            ("<<https://x>", "<https://x"),
            ("<>", ""),
            ("<|>", ""),
            ("trailing <", "trailing <"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input:?}");
        }
    }

    #[test]
    fn strips_one_leading_mention() {
        assert_eq!(strip_leading_mention("<@U123> do it"), "do it");
        assert_eq!(strip_leading_mention("  <@U123|bot>   do it  "), "do it");
        assert_eq!(strip_leading_mention("<@U1> <@U2> x"), "<@U2> x");
        assert_eq!(strip_leading_mention("hi <@U1>"), "hi <@U1>");
        assert_eq!(strip_leading_mention("<@U1"), "<@U1");
        assert_eq!(strip_leading_mention("<@>x"), "<@>x");
        assert_eq!(strip_leading_mention("<@U1>"), "");
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(
            escape("a & <!channel> > b"),
            "a &amp; &lt;!channel&gt; &gt; b"
        );
        assert_eq!(normalize(&escape("x < y && <@U1>")), "x < y && <@U1>");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 4), "hél…");
        assert_eq!(truncate("ab", 0), "");
        assert_eq!(truncate("ab", 1), "…");
    }
}
