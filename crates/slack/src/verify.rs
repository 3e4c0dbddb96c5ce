//! Slack request signature verification
//! (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//!
//! Verify the **raw** body before decoding it:
//!
//! ```
//! use errand_slack::verify::{sign, verify_parts};
//! let body = b"token=x&team_id=T1&text=hello";
//! let sig = sign("secret", 1_700_000_000, body);
//! assert!(verify_parts("secret", Some("1700000000"), Some(&sig), body, 1_700_000_010).is_ok());
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Header carrying the request's Unix timestamp.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Header carrying `v0=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Requests whose timestamp is further than this from now (either direction)
/// are rejected as [`VerifyError::Stale`].
pub const MAX_SKEW_SECS: i64 = 60 * 5;

const VERSION_PREFIX: &str = "v0=";

/// Why a request was not accepted as coming from Slack. Answer all of them with
/// HTTP 401 and don't act on the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `X-Slack-Request-Timestamp` header.
    #[error("missing X-Slack-Request-Timestamp header")]
    MissingTimestamp,
    /// No `X-Slack-Signature` header.
    #[error("missing X-Slack-Signature header")]
    MissingSignature,
    /// The timestamp header is not an integer number of seconds.
    #[error("X-Slack-Request-Timestamp is not an integer")]
    BadTimestamp,
    /// The timestamp is more than [`MAX_SKEW_SECS`] away from now (a replay,
    /// or a badly wrong clock).
    #[error("request timestamp is more than 5 minutes away from now")]
    Stale,
    /// The signature is malformed or does not match (or no signing secret is
    /// configured).
    #[error("request signature does not match")]
    BadSignature,
}

/// Checks a request against the `X-Slack-Request-Timestamp` and
/// `X-Slack-Signature` headers in `headers`.
///
/// `body` must be the raw bytes as received; `now_unix` is the current time
/// in Unix seconds (see [`crate::now_unix`]). An empty `signing_secret` never
/// verifies.
pub fn verify_request(
    signing_secret: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    // A header that is present but not visible ASCII cannot be a valid value.
    let timestamp = match headers.get(TIMESTAMP_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| VerifyError::BadTimestamp)?),
    };
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| VerifyError::BadSignature)?),
    };
    verify_parts(signing_secret, timestamp, signature, body, now_unix)
}

/// [`verify_request`] with the two header values passed explicitly.
pub fn verify_parts(
    signing_secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    let timestamp = timestamp.ok_or(VerifyError::MissingTimestamp)?;
    let signature = signature.ok_or(VerifyError::MissingSignature)?;

    let ts = parse_timestamp(timestamp)?;
    let skew = (i128::from(now_unix) - i128::from(ts)).abs();
    if skew > i128::from(MAX_SKEW_SECS) {
        return Err(VerifyError::Stale);
    }

    if signing_secret.is_empty() {
        return Err(VerifyError::BadSignature);
    }
    let provided = signature
        .strip_prefix(VERSION_PREFIX)
        .and_then(|hex_part| hex::decode(hex_part).ok())
        .ok_or(VerifyError::BadSignature)?;
    // Sign over the timestamp string exactly as sent.
    let expected = mac_bytes(signing_secret, timestamp, body);
    if expected.len() == provided.len() && bool::from(expected.ct_eq(&provided)) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Slack's signature for `body` sent at `timestamp`: `v0=` + lowercase hex
/// HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub fn sign(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac_bytes(signing_secret, &timestamp.to_string(), body);
    format!("{VERSION_PREFIX}{}", hex::encode(mac))
}

fn parse_timestamp(raw: &str) -> Result<i64, VerifyError> {
    // Digits only (Slack sends plain seconds); rejects "+1", " 1", "1.5".
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    raw.parse::<i64>().map_err(|_| VerifyError::BadTimestamp)
}

fn mac_bytes(signing_secret: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; `new_from_slice` cannot fail.
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: &str = "1531420618";
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    const MORPHISM_SECRET: &str = "fa2c05deeef5a4077494e89f54394de0";
    const MORPHISM_SIG: &str =
        "v0=baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f666";

    const NOW: i64 = 1_531_420_618;

    fn headers(ts: Option<&str>, sig: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(ts) = ts {
            h.insert("X-Slack-Request-Timestamp", ts.parse().unwrap());
        }
        if let Some(sig) = sig {
            h.insert("X-Slack-Signature", sig.parse().unwrap());
        }
        h
    }

    #[test]
    fn slack_documented_vector() {
        assert_eq!(sign(SLACK_SECRET, NOW, SLACK_BODY.as_bytes()), SLACK_SIG);
        let h = headers(Some(SLACK_TS), Some(SLACK_SIG));
        assert_eq!(
            verify_request(SLACK_SECRET, &h, SLACK_BODY.as_bytes(), NOW),
            Ok(())
        );
    }

    #[test]
    fn slack_morphism_vector() {
        assert_eq!(sign(MORPHISM_SECRET, NOW, b"test-body"), MORPHISM_SIG);
        let h = headers(Some(SLACK_TS), Some(MORPHISM_SIG));
        assert_eq!(
            verify_request(MORPHISM_SECRET, &h, b"test-body", NOW + 10),
            Ok(())
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let sig = format!("v0={}", MORPHISM_SIG[3..].to_uppercase());
        assert_eq!(
            verify_parts(
                MORPHISM_SECRET,
                Some(SLACK_TS),
                Some(&sig),
                b"test-body",
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_secret_or_signature_is_rejected() {
        let check = |secret: &str, sig: &str, body: &[u8]| {
            verify_parts(secret, Some(SLACK_TS), Some(sig), body, NOW)
        };
        assert_eq!(
            check(MORPHISM_SECRET, MORPHISM_SIG, b"test-body!"),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check("another-secret", MORPHISM_SIG, b"test-body"),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check("", MORPHISM_SIG, b"test-body"),
            Err(VerifyError::BadSignature)
        );
        for bad in [
            "",
            "v0=",
            "v1=baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f666",
            "baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f666",
            "v0=baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f66",
            "v0=baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f6660",
            "v0=baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f66700",
            "v0=zzz",
            "v0=é",
        ] {
            assert_eq!(
                check(MORPHISM_SECRET, bad, b"test-body"),
                Err(VerifyError::BadSignature),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn timestamp_is_part_of_the_signature() {
        // Same body and signature, different (still fresh) timestamp.
        assert_eq!(
            verify_parts(
                MORPHISM_SECRET,
                Some("1531420619"),
                Some(MORPHISM_SIG),
                b"test-body",
                NOW
            ),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps() {
        let ok = |now: i64| {
            verify_parts(
                MORPHISM_SECRET,
                Some(SLACK_TS),
                Some(MORPHISM_SIG),
                b"test-body",
                now,
            )
        };
        assert_eq!(ok(NOW + 300), Ok(()));
        assert_eq!(ok(NOW - 300), Ok(()));
        assert_eq!(ok(NOW + 301), Err(VerifyError::Stale));
        assert_eq!(ok(NOW - 301), Err(VerifyError::Stale));
        assert_eq!(ok(i64::MAX), Err(VerifyError::Stale));
        assert_eq!(ok(i64::MIN), Err(VerifyError::Stale));
        // Stale wins over a bad signature: no HMAC work for replays.
        assert_eq!(
            verify_parts(MORPHISM_SECRET, Some("1"), Some("v0=00"), b"", NOW),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        let body = b"test-body";
        assert_eq!(
            verify_request(
                MORPHISM_SECRET,
                &headers(None, Some(MORPHISM_SIG)),
                body,
                NOW
            ),
            Err(VerifyError::MissingTimestamp)
        );
        assert_eq!(
            verify_request(MORPHISM_SECRET, &headers(Some(SLACK_TS), None), body, NOW),
            Err(VerifyError::MissingSignature)
        );
        assert_eq!(
            verify_request(MORPHISM_SECRET, &headers(None, None), body, NOW),
            Err(VerifyError::MissingTimestamp)
        );
        for bad_ts in [
            "",
            "abc",
            "1531420618.5",
            "+1531420618",
            " 1531420618",
            "-5",
            "99999999999999999999",
        ] {
            assert_eq!(
                verify_parts(MORPHISM_SECRET, Some(bad_ts), Some(MORPHISM_SIG), body, NOW),
                Err(VerifyError::BadTimestamp),
                "{bad_ts:?}"
            );
        }
        let mut h = http::HeaderMap::new();
        h.insert(
            TIMESTAMP_HEADER,
            http::HeaderValue::from_bytes(b"15314\xff0618").unwrap(),
        );
        h.insert(SIGNATURE_HEADER, MORPHISM_SIG.parse().unwrap());
        assert_eq!(
            verify_request(MORPHISM_SECRET, &h, body, NOW),
            Err(VerifyError::BadTimestamp)
        );
    }
}
