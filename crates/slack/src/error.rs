//! The error shared by the payload decoders.

/// A Slack request body could not be decoded.
///
/// Returned by [`crate::SlashCommand::from_form`],
/// [`crate::Interaction::from_form`] and [`crate::EventEnvelope::from_json`].
/// Callers usually answer these with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not valid `application/x-www-form-urlencoded`.
    #[error("malformed form body: {0}")]
    Form(String),
    /// The body (or the interaction's `payload` field) is not the JSON we expect.
    #[error("malformed JSON payload: {0}")]
    Json(String),
    /// A required field is missing or empty.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// The payload is of a kind this crate does not handle
    /// (e.g. an interaction of type `view_submission`).
    #[error("unsupported payload type `{0}`")]
    UnsupportedType(String),
}
