//! Redaction of secret values from anything errand records or shows.
//!
//! A harness may print a secret whole, or in pieces: split across stream
//! chunks, across lines, or wrapped by a tool's output. So besides every whole
//! occurrence, every run of at least [`MIN_PIECE`] characters that is a piece of
//! a secret is replaced as well: no piece long enough to help an attacker ever
//! reaches a log. Matching uses a set of the secrets' [`MIN_PIECE`]-grams, so the
//! cost is linear in the text, not in text × secrets.

use std::collections::HashSet;

/// The shortest piece of a secret that is redacted on its own.
pub const MIN_PIECE: usize = 8;

/// What a secret (or a piece of one) is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Redacts a fixed set of secret values.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Vec<u8>>,
    grams: HashSet<[u8; MIN_PIECE]>,
}

impl Redactor {
    /// Secrets shorter than [`MIN_PIECE`] are matched only whole (and only if at
    /// least 4 bytes long, since shorter values would mask ordinary text).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(s.as_ref());
        }
        r
    }

    /// Adds a secret (one that appeared after the redactor was made, such as
    /// a renewed token).
    pub fn add(&mut self, secret: &str) {
        let s = secret.as_bytes();
        if s.len() < 4 || self.secrets.iter().any(|x| x == s) {
            return;
        }
        for w in s.windows(MIN_PIECE) {
            let mut g = [0u8; MIN_PIECE];
            g.copy_from_slice(w);
            self.grams.insert(g);
        }
        self.secrets.push(s.to_vec());
    }

    /// Whether it knows no secret (and so redacts nothing).
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether `text` holds a secret or a piece of one.
    pub fn finds(&self, text: &str) -> bool {
        !self.spans(text.as_bytes()).is_empty()
    }

    /// `text` with every secret, and every piece of one, masked.
    pub fn redact(&self, text: &str) -> String {
        let spans = self.spans(text.as_bytes());
        if spans.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            // Spans are widened to char boundaries, so slicing is safe.
            out.push_str(&text[at..start]);
            out.push_str(MASK);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Byte ranges to mask, sorted, merged, on char boundaries.
    fn spans(&self, t: &[u8]) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for s in self.secrets.iter().filter(|s| s.len() < MIN_PIECE) {
            let mut i = 0;
            while i + s.len() <= t.len() {
                if &t[i..i + s.len()] == s.as_slice() {
                    spans.push((i, i + s.len()));
                    i += s.len();
                } else {
                    i += 1;
                }
            }
        }
        if !self.grams.is_empty() && t.len() >= MIN_PIECE {
            let mut i = 0;
            while i + MIN_PIECE <= t.len() {
                let mut g = [0u8; MIN_PIECE];
                g.copy_from_slice(&t[i..i + MIN_PIECE]);
                if self.grams.contains(&g) {
                    // Extend while consecutive windows are still pieces of a secret.
                    let mut end = i + MIN_PIECE;
                    while end < t.len() {
                        g.copy_from_slice(&t[end + 1 - MIN_PIECE..=end]);
                        if !self.grams.contains(&g) {
                            break;
                        }
                        end += 1;
                    }
                    spans.push((i, end));
                    i = end;
                } else {
                    i += 1;
                }
            }
        }
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (mut s, mut e) in spans {
            while s > 0 && !is_boundary(t, s) {
                s -= 1;
            }
            while e < t.len() && !is_boundary(t, e) {
                e += 1;
            }
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }
}

fn is_boundary(t: &[u8], i: usize) -> bool {
    // A UTF-8 continuation byte is 0b10xxxxxx.
    i >= t.len() || (t[i] & 0xC0) != 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_added_later_is_redacted_whole_and_in_pieces() {
        let mut r = Redactor::new(["sk-first-secret-1"]);
        assert!(!r.finds("token ghs_renewedTOKEN42"));
        r.add("ghs_renewedTOKEN42");
        assert_eq!(
            r.redact("token ghs_renewedTOKEN42"),
            format!("token {MASK}")
        );
        assert_eq!(r.redact("a piece: renewedTOK"), format!("a piece: {MASK}"));
        assert_eq!(r.redact("sk-first-secret-1"), MASK);
    }

    const KEY: &str = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";

    #[test]
    fn whole_secrets_are_masked() {
        let r = Redactor::new([KEY]);
        assert_eq!(r.redact(&format!("key={KEY}!")), "key=[REDACTED]!");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn pieces_split_across_chunks_are_masked() {
        let r = Redactor::new([KEY]);
        let (a, b) = KEY.split_at(20);
        let line1 = format!(r#"{{"delta":{{"text":"here it is: {a}"}}}}"#);
        let line2 = format!(r#"{{"delta":{{"text":"{b} and more"}}}}"#);
        assert_eq!(
            r.redact(&line1),
            r#"{"delta":{"text":"here it is: [REDACTED]"}}"#
        );
        assert_eq!(
            r.redact(&line2),
            r#"{"delta":{"text":"[REDACTED] and more"}}"#
        );
        // A middle piece on its own.
        assert_eq!(r.redact(&format!("..{}..", &KEY[10..30])), "..[REDACTED]..");
    }

    #[test]
    fn short_words_are_not_masked_and_utf8_is_kept_whole() {
        let r = Redactor::new([KEY, "abc"]);
        // "sk-ant-" is 7 characters: shorter than a piece.
        assert_eq!(r.redact("sk-ant- is a prefix"), "sk-ant- is a prefix");
        let r = Redactor::new(["pässwörd-secret-value"]);
        assert_eq!(r.redact("x pässwörd-secret-value y"), "x [REDACTED] y");
        assert_eq!(r.redact("é-secret-value"), "é[REDACTED]");
    }

    #[test]
    fn several_secrets_and_adjacent_matches_merge() {
        let r = Redactor::new([KEY, "ghs_0123456789abcdefABCDEF"]);
        let text = format!("{KEY}ghs_0123456789abcdefABCDEF tail");
        assert_eq!(r.redact(&text), "[REDACTED] tail");
        assert!(r.finds(&text));
        assert!(!r.finds("tail"));
    }
}
