//! Man page and completions from `ipsec_cli::cli::command()` (shared by the `ipsec-gen` example
//! and the tests).

use std::path::{Path, PathBuf};

/// Writes `ipsec.1`, `ipsec.bash`, `_ipsec` (zsh) and `ipsec.fish` into `dir`.
pub fn generate(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cmd = ipsec_cli::cli::command();
    let mut written = Vec::new();
    let man = dir.join("ipsec.1");
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(&man, buf)?;
    written.push(man);
    for (shell, name) in [
        (clap_complete::Shell::Bash, "ipsec.bash"),
        (clap_complete::Shell::Zsh, "_ipsec"),
        (clap_complete::Shell::Fish, "ipsec.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "ipsec", &mut buf);
        let p = dir.join(name);
        std::fs::write(&p, buf)?;
        written.push(p);
    }
    Ok(written)
}
