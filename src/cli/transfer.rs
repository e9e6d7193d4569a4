//! `walink export` / `walink import` files: an account's state sealed with
//! a key the user holds, encrypted and decrypted here in the CLI, so the
//! passphrase never reaches walinkd, its socket or its log.
//!
//! Layout: `WALINKX1` · mode (1 passphrase, 2 key file) · 16-byte salt ·
//! AES-256-GCM envelope of the state bytes. The key comes from Argon2id
//! over the passphrase and salt, or straight from the key file.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::store::seal::{self, SALT_LEN, Sealer};

const MAGIC: &[u8; 8] = b"WALINKX1";
const MODE_PASSPHRASE: u8 = 1;
const MODE_KEY_FILE: u8 = 2;
const CONTEXT: &[u8] = b"walink account export v1";
const HEADER: usize = MAGIC.len() + 1 + SALT_LEN;
/// Environment variable a passphrase may come from (for scripts).
pub const PASSPHRASE_ENV: &str = "WALINK_PASSPHRASE";

/// What protects an export file.
pub enum Secret {
    Passphrase(Vec<u8>),
    KeyFile(PathBuf),
}

impl Secret {
    fn mode(&self) -> u8 {
        match self {
            Secret::Passphrase(_) => MODE_PASSPHRASE,
            Secret::KeyFile(_) => MODE_KEY_FILE,
        }
    }

    fn sealer(&self, salt: &[u8; SALT_LEN]) -> Result<Sealer, String> {
        match self {
            Secret::Passphrase(p) => Sealer::from_passphrase(p, salt).map_err(|e| e.to_string()),
            Secret::KeyFile(path) => Sealer::from_key_file(path).map_err(|e| e.to_string()),
        }
    }
}

/// Encrypts `state` into the bytes of an export file.
pub fn seal_export(secret: &Secret, state: &[u8]) -> Result<Vec<u8>, String> {
    let salt = seal::random_salt();
    let sealed = secret.sealer(&salt)?.seal(state, CONTEXT);
    let mut out = Vec::with_capacity(HEADER + sealed.len());
    out.extend_from_slice(MAGIC);
    out.push(secret.mode());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts the bytes of an export file.
pub fn open_export(secret: &Secret, file: &[u8]) -> Result<Vec<u8>, String> {
    if file.len() < HEADER || &file[..MAGIC.len()] != MAGIC {
        return Err("it is not a walink export file".into());
    }
    let mode = file[MAGIC.len()];
    if mode != secret.mode() {
        return Err(match mode {
            MODE_PASSPHRASE => "it is protected by a passphrase; leave out --key-file".into(),
            MODE_KEY_FILE => "it is protected by a key file; give it with --key-file".into(),
            other => format!("it uses protection mode {other}, unknown to this walink"),
        });
    }
    let salt: [u8; SALT_LEN] = file[MAGIC.len() + 1..HEADER]
        .try_into()
        .map_err(|_| "its header is truncated".to_string())?;
    secret
        .sealer(&salt)?
        .open(&file[HEADER..], CONTEXT)
        .map_err(|e| match e {
            seal::SealError::Damaged | seal::SealError::WrongKey { .. } => {
                "the passphrase or key is wrong, or the file is damaged".to_string()
            }
            other => other.to_string(),
        })
}

/// The secret the user chose: a key file, a passphrase file, the
/// `WALINK_PASSPHRASE` variable, or a passphrase typed at the terminal
/// (twice when `confirm`).
pub fn secret_from(
    key_file: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    confirm: bool,
) -> Result<Secret, String> {
    if let Some(path) = key_file {
        return Ok(Secret::KeyFile(path));
    }
    let passphrase = match passphrase_file {
        Some(path) => read_passphrase_file(&path)?,
        None => match std::env::var_os(PASSPHRASE_ENV) {
            Some(value) => value.into_encoded_bytes(),
            None => {
                let first = prompt("Passphrase: ")?;
                if confirm && prompt("Passphrase again: ")? != first {
                    return Err("the two passphrases differ".into());
                }
                first
            }
        },
    };
    if passphrase.is_empty() {
        return Err("the passphrase is empty".into());
    }
    Ok(Secret::Passphrase(passphrase))
}

fn read_passphrase_file(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the passphrase file {}: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

/// Reads one line from the terminal with echo off.
fn prompt(label: &str) -> Result<Vec<u8>, String> {
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            format!(
                "no terminal to ask for the passphrase ({e}); use --passphrase-file, \
                 --key-file or {PASSPHRASE_ENV}"
            )
        })?;
    let fd = tty.as_raw_fd();
    // SAFETY: tcgetattr/tcsetattr on a terminal we opened, with a zeroed
    // termios the call fills in.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_termios {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut writer = &tty;
    let _ = write!(writer, "{label}");
    let _ = writer.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    if have_termios {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    let _ = writeln!(writer);
    read.map_err(|e| format!("cannot read the passphrase: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}

/// Writes an export file readable by its owner only, never over another file.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_round_trip_and_wrong_passphrase() {
        let secret = Secret::Passphrase(b"correct horse".to_vec());
        let file = seal_export(&secret, b"account state").unwrap();
        assert!(file.starts_with(MAGIC));
        assert_eq!(open_export(&secret, &file).unwrap(), b"account state");
        let wrong = Secret::Passphrase(b"battery staple".to_vec());
        let err = open_export(&wrong, &file).unwrap_err();
        assert!(err.contains("passphrase or key is wrong"), "{err}");
    }

    #[test]
    fn key_files_and_mode_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, [4u8; 32]).unwrap();
        let secret = Secret::KeyFile(key);
        let file = seal_export(&secret, b"state").unwrap();
        assert_eq!(open_export(&secret, &file).unwrap(), b"state");
        let err = open_export(&Secret::Passphrase(b"x".to_vec()), &file).unwrap_err();
        assert!(err.contains("--key-file"), "{err}");
        assert!(
            open_export(&secret, b"garbage")
                .unwrap_err()
                .contains("not a walink export")
        );
        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open_export(&secret, &flipped).is_err());
    }

    #[test]
    fn export_files_are_private_and_never_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sales.walink");
        write_new_private(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            write_new_private(&path, b"y")
                .unwrap_err()
                .contains("cannot create")
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
