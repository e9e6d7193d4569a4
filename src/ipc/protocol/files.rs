//! Params and results of sending a file: `send_file_part` brings the file's
//! bytes to walinkd in parts (a request line stays within
//! [`super::MAX_LINE_BYTES`], whatever the file's size), then `send` with
//! `file` names the transfer and sends it. The client reads the file, so
//! walinkd needs no access to the client's files (it runs as its own user,
//! on a read-only system).

use serde::{Deserialize, Serialize};

/// Largest `data` of one `send_file_part`, in base64 characters.
pub const MAX_FILE_PART: usize = 48 * 1024;
/// Longest transfer name.
pub const MAX_TRANSFER_LEN: usize = 64;
/// Longest file name `send` takes for a file.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Params of `send_file_part`: parts in order, from 0, on any connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendFilePartParams {
    pub account: String,
    /// Any name the client picks (letters, digits, `-`, `_`), the same for
    /// every part of one file; part 0 starts it afresh.
    pub transfer: String,
    /// 0-based part number.
    pub part: u32,
    /// The whole file's size in bytes, the same on every part: a file past
    /// `daemon.send_file_max_mib` is refused at part 0.
    pub size: u64,
    /// Base64 (standard, padded) of this part of the file.
    pub data: String,
}

/// Result of `send_file_part`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendFilePartResult {
    pub transfer: String,
    /// Bytes received so far.
    pub received: u64,
    pub size: u64,
}

/// The file a `send` carries; its `text` is then the caption (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendFile {
    /// A transfer every part of which `send_file_part` has received.
    pub transfer: String,
    /// The file's name; a document shows it (only its last component).
    pub name: String,
    /// Send as a document whatever the file is (no preview, the name shown).
    #[serde(default)]
    pub as_document: bool,
}

pub(super) fn check_transfer(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_TRANSFER_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "transfer {name:?} must be 1 to {MAX_TRANSFER_LEN} letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

pub(super) fn check_file(file: &SendFile) -> Result<(), String> {
    check_transfer(&file.transfer)?;
    if file.name.trim().is_empty() || file.name.len() > MAX_FILE_NAME_LEN {
        return Err(format!("file name must be 1 to {MAX_FILE_NAME_LEN} bytes"));
    }
    Ok(())
}
