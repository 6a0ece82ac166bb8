//! The top-level `--help`: commands in groups (store, catalog, backup,
//! compaction, processes, import and export, service, sizing, shell), each
//! group with an example, built from the commands' own descriptions so that
//! the two never drift apart. Also shell completions and man pages, both
//! generated from the same command definition.

use std::io::Write;
use std::path::Path;

use clap::Command;

use crate::error::{Error, Result};

/// Each group: heading, commands in it, an example.
const GROUPS: &[(&str, &[&str], &str)] = &[
    (
        "Store",
        &[
            "init", "put", "get", "has", "stat", "segments", "verify", "seal", "settings", "key",
        ],
        "vaultstore put --store /srv/vault message.eml",
    ),
    (
        "Catalog",
        &[
            "archive", "link", "refs", "items", "owners", "delete", "trash", "hold",
        ],
        "vaultstore archive --store /srv/vault --owner alice --item '<id@host>' message.eml",
    ),
    (
        "Backup",
        &["backup", "mark-indexed", "pending", "feed"],
        "vaultstore backup run --store /srv/vault --to /mnt/backup/vault",
    ),
    (
        "Compaction",
        &["partition", "defrag", "redistribute"],
        "vaultstore defrag --store /srv/vault --threshold 0.5 --dry-run",
    ),
    (
        "Processes",
        &["jobs", "maintain", "resync", "checkpoint"],
        "vaultstore jobs history --store /srv/vault --period 3d",
    ),
    (
        "Import and export",
        &["import", "export"],
        "vaultstore import --store /srv/vault --owner-from-folder /exports/maildirs",
    ),
    (
        "Service",
        &["serve", "token"],
        "vaultstore serve --store /srv/vault --listen 127.0.0.1:7878",
    ),
    ("Sizing", &["bench"], "vaultstore bench --corpus ./mail"),
    (
        "Shell",
        &["completions", "man", "help"],
        "vaultstore completions bash > /etc/bash_completion.d/vaultstore",
    ),
];

/// `cmd` with a help page that lists its subcommands by group.
pub(crate) fn grouped(cmd: Command) -> Command {
    let width = cmd
        .get_subcommands()
        .map(|c| c.get_name().len())
        .chain(std::iter::once(4))
        .max()
        .unwrap_or(12);
    let mut text = String::new();
    for (heading, names, example) in GROUPS {
        text.push_str(&format!("{heading}:\n"));
        for name in *names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_else(|| {
                    "Print this message or the help of the given subcommand(s)".into()
                });
            text.push_str(&format!("  {name:<width$}  {about}\n"));
        }
        text.push_str(&format!("  e.g. {example}\n\n"));
    }
    let template = format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{text}Options:\n{{options}}{{after-help}}"
    );
    cmd.help_template(template).after_help(
        "Every command takes --store DIR (or VAULTSTORE_STORE). `vaultstore COMMAND --help` tells more.\n\
         Exit codes: 0 done; 1 done in part, or damage found (verify); 2 usage or operational error.",
    )
}

/// Print the completion script for `shell` (bash, zsh, fish, elvish, powershell).
pub(crate) fn completions(mut cmd: Command, shell: clap_complete::Shell) {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    super::say_raw(&String::from_utf8_lossy(&out));
}

/// The man pages: `vaultstore.1` on stdout, or every page (one per
/// subcommand too, `vaultstore-init.1` ...) written into `dir`.
pub(crate) fn man(cmd: Command, dir: Option<&Path>) -> Result<()> {
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Error::io("<stdout>", "render man page", e))?;
            super::say_raw(&String::from_utf8_lossy(&out));
            Ok(())
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| Error::io(dir, "write man pages", e))?;
            let mut err = std::io::stderr();
            let _ = writeln!(err, "man pages written to {}", dir.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_is_in_exactly_one_group() {
        let cmd = super::super::Cli::command();
        let mut listed: Vec<&str> = GROUPS.iter().flat_map(|g| g.1.iter().copied()).collect();
        listed.sort();
        let before = listed.len();
        listed.dedup();
        assert_eq!(before, listed.len(), "a command is in two groups");
        let mut names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        names.push("help");
        names.sort();
        assert_eq!(listed, names);
    }
}
