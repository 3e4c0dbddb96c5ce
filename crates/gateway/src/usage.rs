//! Usage extraction from provider answers, per protocol.
