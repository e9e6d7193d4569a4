//! Received files going to a client (`media_part`): part 0 downloads and
//! checks the file into an unnamed file in the state directory (nothing to
//! clean up after a crash), the parts after it read from there, and the
//! last part ends the transfer. The client writes the file itself, wherever
//! it may: walinkd under its hardened unit may write only its state
//! directory.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::ipc::protocol::{MAX_FILE_PART, MediaPartResult, RpcError};
use crate::messages::media::Checked;

/// Files that may be going out at once (each holds a descriptor and disk).
const MAX_TRANSFERS: usize = 8;
/// A transfer not read from for this long was abandoned by its client.
const ABANDONED_AFTER: Duration = Duration::from_secs(600);
/// Bytes per part: their base64 fills a part exactly.
const PART_BYTES: u64 = (MAX_FILE_PART / 4 * 3) as u64;

struct Held {
    /// The message the file is of.
    id: String,
    file: File,
    checked: Checked,
    parts: u32,
    next: u32,
    touched: Instant,
}

pub struct Fetches {
    dir: PathBuf,
    held: Mutex<HashMap<(String, String), Held>>,
}

impl Fetches {
    /// Fetched files are held in `dir` (the state directory).
    pub fn new(dir: &Path) -> Fetches {
        Fetches {
            dir: dir.to_owned(),
            held: Mutex::default(),
        }
    }

    /// A file for one fetch, already unlinked: only its descriptor names it.
    pub fn scratch(&self) -> Result<File, RpcError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = self.dir.join(format!(
            ".fetch-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                RpcError::internal(format!(
                    "cannot create {} to hold a fetched file: {e}; check that the state directory is writable",
                    path.display()
                ))
            })?;
        std::fs::remove_file(&path).map_err(RpcError::internal)?;
        Ok(file)
    }

    /// Holds a file just fetched into `file` for transfer `key`; the client
    /// reads it with [`Fetches::part`] from part 0.
    pub fn hold(
        &self,
        key: (String, String),
        id: &str,
        file: File,
        checked: Checked,
    ) -> Result<(), RpcError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, h| h.touched.elapsed() < ABANDONED_AFTER);
        held.remove(&key);
        if held.len() >= MAX_TRANSFERS {
            return Err(RpcError::invalid_params(format!(
                "{MAX_TRANSFERS} files are going to clients already; retry once one of them is read"
            )));
        }
        let parts = checked.size.div_ceil(PART_BYTES).max(1) as u32;
        held.insert(
            key,
            Held {
                id: id.to_owned(),
                file,
                checked,
                parts,
                next: 0,
                touched: Instant::now(),
            },
        );
        Ok(())
    }

    /// Part `part` of transfer `key`, in order; the last one ends it.
    pub fn part(
        &self,
        key: &(String, String),
        id: &str,
        part: u32,
    ) -> Result<MediaPartResult, RpcError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let h = held
            .get_mut(key)
            .filter(|h| h.next == part && h.id == id)
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "part {part} of media transfer {:?} was not expected; start again with part 0",
                    key.1
                ))
            })?;
        let offset = u64::from(part) * PART_BYTES;
        let len = PART_BYTES.min(h.checked.size.saturating_sub(offset)) as usize;
        let mut chunk = vec![0u8; len];
        h.file
            .read_exact_at(&mut chunk, offset)
            .map_err(RpcError::internal)?;
        h.next += 1;
        h.touched = Instant::now();
        let result = MediaPartResult {
            account: key.0.clone(),
            id: h.id.clone(),
            transfer: key.1.clone(),
            part,
            parts: h.parts,
            kind: h.checked.kind.clone(),
            size: h.checked.size,
            sha256: h.checked.sha256.clone(),
            mimetype: h.checked.mimetype.clone(),
            filename: h.checked.filename.clone(),
            data: STANDARD.encode(&chunk),
        };
        if h.next == h.parts {
            held.remove(key);
        }
        Ok(result)
    }
}
