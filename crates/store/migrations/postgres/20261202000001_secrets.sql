-- Secrets errand hands to runs (API keys…), sealed by the caller before they
-- reach the database: `sealed` is nonce || ciphertext || tag, never plaintext.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    sealed     BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
