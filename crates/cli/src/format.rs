//! `cistern format --meta-dir DIR`: wipes a master's metadata store, the equivalent of
//! Alluxio's `formatJournal`. The next master started on DIR lists the UFS again.

use anyhow::{anyhow, bail, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FormatArgs {
    /// The master's `namespace.meta-dir`.
    #[arg(long)]
    pub meta_dir: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(args: FormatArgs) -> Result<()> {
    let store = args.meta_dir.join(cistern_master::store::STORE_FILE);
    if !store.exists() {
        println!("{}: no metadata store; nothing to format", args.meta_dir.display());
        return Ok(());
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("formatting {} wipes its metadata; pass --yes to confirm when not on a terminal", args.meta_dir.display());
        }
        print!("Wipe the metadata in {}? The namespace is then listed again from the UFS. [y/N] ", store.display());
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not formatted");
        }
    }
    cistern_master::store::format(&args.meta_dir).map_err(|e| anyhow!(e.message))?;
    println!("Formatted {}", args.meta_dir.display());
    Ok(())
}
