//! What a command writes to stdout, for its neighbours in a pipeline:
//! downloads, decoded or transformed text, and the text `echo`/`printf`
//! print when it is known.

use crate::words::Arg;

/// Programs that write what they download to stdout (by default).
pub(super) const DOWNLOADERS: &[&str] = &[
    "curl",
    "wget",
    "fetch",
    "aria2c",
    "http",
    "https",
    "xh",
    "lwp-request",
    "get",
    "lynx",
    "elinks",
    "links",
    "w3m",
];

/// Whether a command prints decoded or transformed text, which a shell
/// downstream would run unchecked.
pub(super) fn decodes(name: &str, rest: &[Arg]) -> bool {
    let has = |f: &str| rest.iter().any(|a| a.text == f);
    let short = |c: char| {
        rest.iter()
            .any(|a| a.text.starts_with('-') && !a.text.starts_with("--") && a.text.contains(c))
    };
    match name {
        "base64" | "base32" | "basenc" => short('d') || has("--decode"),
        "xxd" => short('r') || has("-revert"),
        "openssl" => rest
            .iter()
            .any(|a| matches!(a.text.as_str(), "base64" | "enc" | "-d" | "-a")),
        "rev" | "tr" | "uudecode" | "zcat" | "gunzip" | "bzcat" | "xzcat" | "zstdcat" | "unxz" => {
            true
        }
        "gzip" | "bzip2" | "xz" | "zstd" | "brotli" => short('d') || has("--decode") || short('c'),
        "printf" => rest.iter().any(|a| {
            a.text.contains("\\x")
                || a.text.contains("\\0")
                || a.text.contains("%b")
                || a.text.contains("\\u")
        }),
        "echo" => {
            short('e')
                && rest
                    .iter()
                    .any(|a| a.text.contains("\\x") || a.text.contains("\\0"))
        }
        "python" | "python3" | "perl" | "ruby" | "node" => rest.iter().any(|a| {
            a.text.contains("b64decode")
                || a.text.contains("decode_base64")
                || a.text.contains("unpack")
                || a.text.contains("from(") && a.text.contains("base64")
        }),
        _ => false,
    }
}

/// What `echo`/`printf` prints when every argument is known.
pub(super) fn printed_text(name: &str, rest: &[Arg]) -> Option<String> {
    if rest
        .iter()
        .any(|a| a.dynamic || a.leading_dynamic || a.unquoted_dynamic)
    {
        return None;
    }
    match name {
        "echo" => {
            let mut args = rest.iter().map(|a| a.text.as_str()).peekable();
            let mut escapes = false;
            while let Some(f) = args.peek() {
                if f.len() > 1 && f.starts_with('-') && f[1..].chars().all(|c| "neE".contains(c)) {
                    escapes |= f.contains('e');
                    args.next();
                } else {
                    break;
                }
            }
            let text = args.collect::<Vec<_>>().join(" ");
            Some(if escapes {
                text.replace("\\n", "\n")
            } else {
                text
            })
        }
        "printf" => {
            let (fmt, args) = rest.split_first()?;
            let fmt = fmt.text.replace("\\n", "\n").replace("\\t", "\t");
            let args: Vec<&str> = args.iter().map(|a| a.text.as_str()).collect();
            if !fmt.contains('%') {
                Some(fmt)
            } else if fmt.trim_end() == "%s" {
                Some(args.join(""))
            } else if fmt.trim_end() == "%s\\n" || fmt.replace('\n', "").trim() == "%s" {
                Some(args.join("\n"))
            } else {
                None
            }
        }
        _ => None,
    }
}
