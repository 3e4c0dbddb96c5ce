//! `errand secret set|ls|rm`: secrets sealed in errand's database.

use anyhow::{bail, Result};
use errand_runner::Paths;

use crate::args::SecretCmd;
use crate::setup::open_store;

pub async fn run(paths: &Paths, cmd: SecretCmd) -> Result<std::process::ExitCode> {
    let store = open_store(paths).await?;
    match cmd {
        SecretCmd::Set { name } => {
            errand_runner::secrets::check_name(&name)?;
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)?;
            let value = value.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                bail!("no value on stdin: use `printf %s \"$VALUE\" | errand secret set {name}`");
            }
            let key = errand_runner::secrets::SecretKey::load(&paths.home)?;
            store.put_secret(&name, &key.seal(&name, value)).await?;
            eprintln!("stored {name} (encrypted); runs get it when their harness needs it");
        }
        SecretCmd::Ls => {
            for (name, at) in store.secret_names().await? {
                println!("{name:<32}  {}", at.format("%Y-%m-%d %H:%M"));
            }
        }
        SecretCmd::Rm { name } => {
            if !store.delete_secret(&name).await? {
                bail!("no secret named {name} (see `errand secret ls`)");
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
