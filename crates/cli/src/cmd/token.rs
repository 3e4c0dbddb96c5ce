//! `errand token create|list|revoke`: API tokens, stored as hashes.

use anyhow::{bail, Result};
use errand_runner::Paths;

use crate::args::TokenCmd;
use crate::setup::open_store;

pub async fn run(paths: &Paths, cmd: TokenCmd) -> Result<std::process::ExitCode> {
    let store = open_store(paths).await?;
    match cmd {
        TokenCmd::Create { name, scope } => {
            let scope = errand_store::Scope::parse_list(&scope)
                .map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let secret = errand_server::auth::new_secret("errand");
            let t = store
                .create_token(&name, &errand_server::auth::hash(&secret), &scope)
                .await?;
            eprintln!(
                "token '{}' ({}, scopes {}) created; it is shown only now:",
                t.name,
                t.id,
                errand_store::Scope::join(&t.scopes)
            );
            println!("{secret}");
        }
        TokenCmd::List => {
            for t in store.list_tokens().await? {
                println!(
                    "{:<36}  {:<20}  {}  {:<7}  {}",
                    t.id,
                    t.name,
                    t.created_at.format("%Y-%m-%d %H:%M"),
                    if t.revoked { "revoked" } else { "active" },
                    errand_store::Scope::join(&t.scopes)
                );
            }
        }
        TokenCmd::Revoke { id } => {
            if !store.revoke_token(&id).await? {
                bail!("no token with id '{id}' (see `errand token list`)");
            }
            println!("revoked {id}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
