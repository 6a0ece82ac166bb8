//! Key commands (`key list|add|remove`) and where passphrases come from:
//! `VAULTSTORE_PASSPHRASE`, `--passphrase-file`, or a prompt on the
//! terminal; never an argument, never logged. Parsing and printing only:
//! the key file is `crate::crypto`'s.

use std::fs::File;

use super::*;
use crate::crypto::{Encryption, KeyRing, Passphrase, SlotInfo, Unlock};
use crate::format::key_file::KdfParams;

/// Environment variable holding the passphrase of an encrypted store.
pub(super) const PASSPHRASE_ENV: &str = "VAULTSTORE_PASSPHRASE";
/// Environment variable holding the passphrase a new key slot gets.
const NEW_PASSPHRASE_ENV: &str = "VAULTSTORE_NEW_PASSPHRASE";

#[derive(Subcommand, Debug)]
pub(super) enum Commands {
    /// Key slots of an encrypted store: list, add, remove. No data is rewritten.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Subcommand, Debug)]
pub(super) enum KeyCommand {
    /// List the key slots (number, creation time, argon2id cost).
    List {
        #[command(flatten)]
        store: StoreArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a slot for a new passphrase (from VAULTSTORE_NEW_PASSPHRASE,
    /// --new-passphrase-file, or asked twice), authorised by an existing one.
    Add {
        #[command(flatten)]
        store: StoreArg,
        /// Read the new passphrase from this file (its first line).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove a slot, authorised by a passphrase of the store. The last
    /// slot is never removed.
    Remove {
        #[command(flatten)]
        store: StoreArg,
        /// The slot's number (see `key list`).
        #[arg(long)]
        slot: u32,
    },
}

/// argon2id's cost for a new key slot.
#[derive(Args, Debug, Clone)]
pub(super) struct KdfArgs {
    /// argon2id memory, MiB (default 256: about half a second here).
    #[arg(long, value_name = "MIB")]
    kdf_memory: Option<u32>,
    /// argon2id passes over the memory (default 3).
    #[arg(long, value_name = "N")]
    kdf_iterations: Option<u32>,
}

impl KdfArgs {
    pub(super) fn params(&self) -> Result<KdfParams> {
        let d = crate::crypto::DEFAULT_KDF;
        let p = KdfParams {
            memory_kib: self
                .kdf_memory
                .map_or(d.memory_kib, |m| m.saturating_mul(1024)),
            iterations: self.kdf_iterations.unwrap_or(d.iterations),
            parallelism: d.parallelism,
        };
        p.check().map_err(Error::Keys)?;
        Ok(p)
    }
}

/// What `init --encrypt` needs: the first passphrase (asked twice at a prompt).
pub(super) fn encryption(store: &StoreArg, kdf: &KdfArgs) -> Result<Encryption> {
    Ok(Encryption {
        passphrase: std::sync::Arc::new(new_passphrase(
            PASSPHRASE_ENV,
            store.passphrase_file.as_deref(),
        )?),
        kdf: kdf.params()?,
    })
}

/// How an open of `store` gets its passphrase, if the store turns out to be encrypted.
pub(super) fn unlock(store: &StoreArg) -> Unlock {
    let file = store.passphrase_file.clone();
    Unlock::Ask(std::sync::Arc::new(move || {
        passphrase(PASSPHRASE_ENV, file.as_deref(), "passphrase: ")
    }))
}

/// A passphrase from the environment variable `env`, else `file`, else the terminal.
fn passphrase(env: &str, file: Option<&Path>, prompt: &str) -> Result<Passphrase> {
    if let Some(v) = std::env::var_os(env) {
        return Passphrase::new(v.into_encoded_bytes());
    }
    if let Some(path) = file {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read passphrase file", e))?;
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        return Passphrase::new(first.to_vec());
    }
    prompt_hidden(
        prompt,
        &format!(
            "the store is encrypted: set {PASSPHRASE_ENV}, give --passphrase-file, or run on a terminal"
        ),
    )
}

/// A new passphrase: from `env` or `file`, or typed twice at the terminal.
fn new_passphrase(env: &str, file: Option<&Path>) -> Result<Passphrase> {
    if std::env::var_os(env).is_some() || file.is_some() {
        return passphrase(env, file, "new passphrase: ");
    }
    let sources = format!(
        "no new passphrase: set {NEW_PASSPHRASE_ENV}, give --new-passphrase-file, or run on a terminal"
    );
    let first = prompt_hidden("new passphrase: ", &sources)?;
    let again = prompt_hidden("new passphrase again: ", &sources)?;
    if !same(&first, &again) {
        return Err(Error::Keys("the two passphrases differ".into()));
    }
    Ok(first)
}

fn same(a: &Passphrase, b: &Passphrase) -> bool {
    a.as_bytes() == b.as_bytes()
}

/// Read a line from the terminal with echo off; without a terminal, the
/// error says where else the passphrase can come from (`sources`).
fn prompt_hidden(prompt: &str, sources: &str) -> Result<Passphrase> {
    use std::io::{BufRead, IsTerminal};
    let no_source = || Error::Crypto(sources.to_string());
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_source())?;
    if !tty.is_terminal() {
        return Err(no_source());
    }
    let echo = EchoOff::new(&tty);
    let mut w = &tty;
    let _ = w.write_all(prompt.as_bytes()).and_then(|_| w.flush());
    let mut line = Vec::new();
    let read = std::io::BufReader::new(&tty).read_until(b'\n', &mut line);
    drop(echo);
    let _ = w.write_all(b"\n");
    read.map_err(|e| Error::io("/dev/tty", "read passphrase", e))?;
    Passphrase::new(line)
}

/// Terminal echo off while it lives.
struct EchoOff<'a> {
    tty: &'a File,
    saved: Option<libc::termios>,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a File) -> EchoOff<'a> {
        use std::os::fd::AsRawFd;
        let fd = tty.as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr on an open terminal descriptor with a
        // termios the call fills; nothing else is touched.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                None
            } else {
                let mut quiet = t;
                quiet.c_lflag &= !libc::ECHO;
                libc::tcsetattr(fd, libc::TCSANOW, &quiet);
                Some(t)
            }
        };
        EchoOff { tty, saved }
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if let Some(t) = self.saved {
            // SAFETY: restores the settings read in `new` on the same descriptor.
            unsafe {
                libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSANOW, &t);
            }
        }
    }
}

pub(super) fn run(command: Commands) -> Result<ExitCode> {
    let Commands::Key(command) = command;
    match command {
        KeyCommand::List { store, json } => {
            let slots = with_ring(&store, |ring| ring.list())?;
            if json {
                print_json(&serde_json::to_value(&slots).unwrap_or_default());
            } else {
                for s in &slots {
                    say!("{}", slot_line(s));
                }
            }
        }
        KeyCommand::Add {
            store,
            new_passphrase_file,
            kdf,
        } => {
            let params = kdf.params()?;
            let n = with_ring(&store, |ring| {
                let pass = passphrase(
                    PASSPHRASE_ENV,
                    store.passphrase_file.as_deref(),
                    "passphrase: ",
                )?;
                let new = new_passphrase(NEW_PASSPHRASE_ENV, new_passphrase_file.as_deref())?;
                ring.add(&pass, &new, params, crate::units::now_ms())
            })?;
            say!("added key slot {n}");
        }
        KeyCommand::Remove { store, slot } => {
            with_ring(&store, |ring| {
                let pass = passphrase(
                    PASSPHRASE_ENV,
                    store.passphrase_file.as_deref(),
                    "passphrase: ",
                )?;
                ring.remove(&pass, slot)
            })?;
            say!("removed key slot {slot}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn slot_line(s: &SlotInfo) -> String {
    format!(
        "slot {}  added {}  argon2id {} MiB, {} passes, {} lane(s)",
        s.number,
        format_time(s.created_ms),
        s.memory_kib / 1024,
        s.iterations,
        s.parallelism
    )
}

/// Run `f` on the store's key ring, with the store directory locked
/// (`flock`) against another key command, so two changes never race.
fn with_ring<T>(store: &StoreArg, f: impl FnOnce(&KeyRing<'_>) -> Result<T>) -> Result<T> {
    let dir = &store.store;
    let manifest = crate::log::Log::manifest_at(&crate::io::StdFs, dir)?;
    if !manifest.encrypted {
        return Err(Error::Keys(format!(
            "store {} is not encrypted: it has no key slots",
            dir.display()
        )));
    }
    let handle = File::open(dir).map_err(|e| Error::io(dir, "open store directory", e))?;
    handle
        .lock()
        .map_err(|e| Error::io(dir, "lock store directory", e))?;
    let vfs = crate::io::StdFs;
    f(&KeyRing::new(&vfs, dir, manifest.store_id))
}
