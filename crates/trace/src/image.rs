//! Images inside traces (a pasted screenshot, a tool that read a PNG): every
//! format keeps them as base64 in the file. [`image_event`] turns one into an
//! [`EventKind::Image`], keeping the data only when it is something a browser
//! may show as a picture:
//!
//! - a raster type (`image/png`, `image/jpeg`, `image/gif`, `image/webp`)
//!   whose first bytes are that type's signature (an SVG, which can hold
//!   script and links, or a mislabelled file is described, not shown);
//! - plain base64 (standard alphabet, `=` padding at the end only);
//! - at most [`MAX_IMAGE_BYTES`] once decoded.
//!
//! Otherwise the event still says the media type and the size, with `data`
//! `None`. Nothing here fetches anything: an image given by URL is never an
//! `Image` with data.

use errand_core::EventKind;

/// The largest image (decoded) whose data an event keeps: 2 MiB.
pub const MAX_IMAGE_BYTES: u64 = 2 * 1024 * 1024;

/// The types shown as pictures, each with the signature its data starts with.
const SHOWN: [(&str, &[u8]); 4] = [
    ("image/png", b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", b"\xff\xd8\xff"),
    ("image/gif", b"GIF8"),
    ("image/webp", b"RIFF"),
];

/// The event for an image of `media_type` given as base64 `data`, part of
/// tool call `tool_id`'s result (or of a user message when `None`).
pub fn image_event(media_type: &str, data: &str, tool_id: Option<&str>) -> EventKind {
    let data = data.trim();
    let media_type = media_type.trim().to_ascii_lowercase();
    let bytes = decoded_len(data);
    let keep = bytes <= MAX_IMAGE_BYTES
        && is_base64(data)
        && SHOWN.iter().any(|(kind, magic)| {
            *kind == media_type
                && decode_prefix(data, magic.len()).is_some_and(|p| p.starts_with(magic))
        });
    EventKind::Image {
        media_type: if media_type.is_empty() {
            "application/octet-stream".to_owned()
        } else {
            media_type.chars().take(100).collect()
        },
        data: keep.then(|| data.to_owned()),
        bytes,
        tool_id: tool_id.map(str::to_owned),
    }
}

/// The decoded size of base64 `data` (its length less padding).
fn decoded_len(data: &str) -> u64 {
    let len = data.len() as u64;
    let pad = data.bytes().rev().take_while(|b| *b == b'=').count() as u64;
    (len * 3 / 4).saturating_sub(pad.min(2))
}

fn is_base64(data: &str) -> bool {
    let body = data.trim_end_matches('=');
    !data.is_empty()
        && data.len() - body.len() <= 2
        && data.len().is_multiple_of(4)
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The first `n` bytes of base64 `data`, when it has them.
fn decode_prefix(data: &str, n: usize) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::with_capacity(n + 3);
    for chunk in data.as_bytes().chunks(4) {
        if out.len() >= n || chunk.len() < 4 || chunk.contains(&b'=') {
            break;
        }
        let mut word = 0u32;
        for c in chunk {
            word = (word << 6) | value(*c)?;
        }
        out.extend_from_slice(&word.to_be_bytes()[1..]);
    }
    (out.len() >= n).then(|| {
        out.truncate(n);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=";

    fn data(k: &EventKind) -> Option<&str> {
        match k {
            EventKind::Image { data, .. } => data.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn a_real_png_is_kept_with_its_size() {
        let k = image_event("image/png", PNG, Some("t1"));
        assert_eq!(data(&k), Some(PNG));
        let EventKind::Image { bytes, tool_id, .. } = &k else {
            panic!("{k:?}")
        };
        assert_eq!(*bytes, 74);
        assert_eq!(tool_id.as_deref(), Some("t1"));
    }

    #[test]
    fn what_is_not_a_picture_is_described_only() {
        // A PNG called a JPEG, an SVG, not base64, an empty one.
        assert_eq!(data(&image_event("image/jpeg", PNG, None)), None);
        let svg = "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=";
        assert_eq!(data(&image_event("image/svg+xml", svg, None)), None);
        assert_eq!(
            data(&image_event("image/png", "iVBOR\"><script>", None)),
            None
        );
        assert_eq!(data(&image_event("image/png", "", None)), None);
        assert_eq!(data(&image_event("IMAGE/PNG", PNG, None)), Some(PNG));
    }

    #[test]
    fn a_large_image_is_described_only() {
        let mut big = String::from("iVBORw0KGgoA");
        big.push_str(&"A".repeat((MAX_IMAGE_BYTES as usize) * 4 / 3 + 8));
        while !big.len().is_multiple_of(4) {
            big.push('A');
        }
        let k = image_event("image/png", &big, None);
        assert_eq!(data(&k), None);
        let EventKind::Image { bytes, .. } = k else {
            panic!()
        };
        assert!(bytes > MAX_IMAGE_BYTES);
    }
}
