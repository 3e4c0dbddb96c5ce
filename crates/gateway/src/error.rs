//! Provider-shaped error answers.
