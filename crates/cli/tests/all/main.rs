//! The integration tests of errand-cli, one test binary (linking the workspace
//! once). Most run the real `errand` binary as a user would, each with its own
//! `ERRAND_HOME`; tests from different modules run side by side in threads of
//! this one process, so none may change process-wide state (environment,
//! current directory, signal handlers): what a test sets, it sets on the
//! commands it starts. One area: `cargo test -p errand-cli --test all e2e::`.

#![allow(clippy::disallowed_methods)] // tests start their own fixtures
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod viewer_browser;

mod adversarial;
mod adversarial_api;
mod adversarial_host;
mod agent_git;
mod config_env;
mod custom;
mod db;
mod deploy;
mod docker;
mod drain;
mod e2e;
mod failures;
mod gateway;
mod git_proxy;
mod github_threads;
mod guard;
mod harnesses;
mod live_nodes;
mod logs_file;
mod modal;
mod pick;
mod retention;
mod sandbox;
mod server;
mod slack;
mod slack_recovery;
mod token_renewal;
mod viewer;
mod webapp;
mod workers;
