//! Unified diffs for [`errand_core::EventKind::FileEdit`], built from what a
//! harness says it changed (old and new text), not from the file system.

use similar::{ChangeTag, TextDiff};

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// A unified diff and its line counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDiff {
    /// `--- a/PATH` / `+++ b/PATH` then hunks; `None` when nothing changed.
    pub diff: Option<String>,
    /// Lines added.
    pub added: u32,
    /// Lines removed.
    pub removed: u32,
}

/// Hunks being collected under one header; see [`DiffBuilder::finish`].
#[derive(Debug, Default)]
pub struct DiffBuilder {
    hunks: String,
    added: usize,
    removed: usize,
}

impl DiffBuilder {
    /// A builder with no hunks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the change from `old` to `new`, both whole files: a missing final
    /// newline is real and shown with `\ No newline at end of file`.
    pub fn whole(&mut self, old: &str, new: &str) -> &mut Self {
        self.push(old, new, true);
        self
    }

    /// Adds the change from `old` to `new`, both excerpts of a larger file
    /// (an `Edit`'s `old_string` / `new_string`). Their hunk line numbers
    /// count from the start of the excerpt, since the file is not known here.
    pub fn excerpt(&mut self, old: &str, new: &str) -> &mut Self {
        self.push(&with_final_newline(old), &with_final_newline(new), false);
        self
    }

    fn push(&mut self, old: &str, new: &str, missing_newline_hint: bool) {
        let diff = TextDiff::from_lines(old, new);
        for change in diff.iter_all_changes() {
            match change.tag() {
                ChangeTag::Insert => self.added += 1,
                ChangeTag::Delete => self.removed += 1,
                ChangeTag::Equal => {}
            }
        }
        let hunks = diff
            .unified_diff()
            .context_radius(CONTEXT)
            .missing_newline_hint(missing_newline_hint)
            .to_string();
        self.hunks.push_str(&hunks);
    }

    /// The diff under a `--- a/PATH` / `+++ b/PATH` header.
    pub fn finish(&self, header_path: &str) -> FileDiff {
        let diff = (!self.hunks.is_empty()).then(|| {
            let path = header_path.trim_start_matches('/');
            format!("--- a/{path}\n+++ b/{path}\n{}", self.hunks)
        });
        FileDiff {
            diff,
            added: saturate(self.added),
            removed: saturate(self.removed),
        }
    }
}

/// A diff from hunks a harness already formatted (`@@ -1,3 +1,4 @@` lines
/// and their ` `/`-`/`+` bodies, each line ending with a newline) under a
/// `--- a/PATH` / `+++ b/PATH` header, its `+`/`-` lines counted. No hunks,
/// no diff.
pub fn from_hunks(header_path: &str, hunks: &str) -> FileDiff {
    if hunks.trim().is_empty() {
        return FileDiff::default();
    }
    let (mut added, mut removed) = (0usize, 0usize);
    for line in hunks.lines() {
        if line.starts_with('+') {
            added += 1;
        } else if line.starts_with('-') {
            removed += 1;
        }
    }
    let path = header_path.trim_start_matches('/');
    FileDiff {
        diff: Some(format!("--- a/{path}\n+++ b/{path}\n{hunks}")),
        added: saturate(added),
        removed: saturate(removed),
    }
}

/// Counts lines the way the diff does: `"a\nb"` and `"a\nb\n"` are two lines.
pub fn line_count(text: &str) -> u32 {
    saturate(text.lines().count())
}

/// Added and removed lines of a unified diff (`+`/`-` lines, not the
/// `+++`/`---` headers).
pub fn count_changes(diff: &str) -> (u32, u32) {
    let (mut added, mut removed) = (0u32, 0u32);
    for line in diff.lines() {
        if line.starts_with("+++") || line.starts_with("---") {
            continue;
        }
        if line.starts_with('+') {
            added = added.saturating_add(1);
        } else if line.starts_with('-') {
            removed = removed.saturating_add(1);
        }
    }
    (added, removed)
}

/// A unified diff without what precedes its first `--- ` header (the
/// `Index:` and `====` lines jsdiff writes); the text as it is when it has
/// no such header.
pub fn strip_preamble(diff: &str) -> &str {
    if diff.starts_with("--- ") {
        return diff;
    }
    match diff.find("\n--- ") {
        Some(i) => &diff[i + 1..],
        None => diff,
    }
}

fn with_final_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_diff_has_header_hunk_and_counts() {
        let d = DiffBuilder::new()
            .excerpt("fn a() {\n    1\n}", "fn a() {\n    2\n    3\n}")
            .finish("src/lib.rs");
        assert_eq!(
            d.diff.as_deref(),
            Some(
                "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,4 @@\n fn a() {\n-    1\n+    2\n+    3\n }\n"
            )
        );
        assert_eq!((d.added, d.removed), (2, 1));
    }

    #[test]
    fn whole_file_from_empty_marks_a_missing_final_newline() {
        let d = DiffBuilder::new().whole("", "a\nb").finish("/abs/x.txt");
        assert_eq!(
            d.diff.as_deref(),
            Some("--- a/abs/x.txt\n+++ b/abs/x.txt\n@@ -0,0 +1,2 @@\n+a\n+b\n\\ No newline at end of file\n")
        );
        assert_eq!((d.added, d.removed), (2, 0));
    }

    #[test]
    fn no_change_gives_no_diff() {
        let d = DiffBuilder::new()
            .excerpt("same", "same")
            .whole("", "")
            .finish("f");
        assert_eq!(d, FileDiff::default());
    }

    #[test]
    fn changes_are_counted_and_preambles_stripped() {
        let d =
            "Index: /w/a\n====\n--- /w/a\n+++ /w/a\n@@ -1,2 +1,2 @@\n one\n-two\n+three\n+four\n";
        assert_eq!(count_changes(d), (2, 1));
        assert!(strip_preamble(d).starts_with("--- /w/a\n+++ /w/a\n@@"));
        assert_eq!(strip_preamble("--- a\n"), "--- a\n");
        assert_eq!(strip_preamble("no header"), "no header");
    }

    #[test]
    fn formatted_hunks_get_a_header_and_counts() {
        let d = from_hunks(
            "/w/a.rs",
            "@@ -1,2 +1,2 @@\n-- old comment\n+// new\n keep\n",
        );
        assert_eq!(
            d.diff.as_deref(),
            Some("--- a/w/a.rs\n+++ b/w/a.rs\n@@ -1,2 +1,2 @@\n-- old comment\n+// new\n keep\n")
        );
        assert_eq!((d.added, d.removed), (1, 1));
        assert_eq!(from_hunks("a", " \n"), FileDiff::default());
    }

    #[test]
    fn line_count_ignores_the_final_newline() {
        assert_eq!(line_count(""), 0);
        assert_eq!(line_count("a"), 1);
        assert_eq!(line_count("a\nb\n"), 2);
    }
}
