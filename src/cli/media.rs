//! `walink media`: walinkd fetches and checks the file and hands it over in
//! `media_part` answers, each within the socket's line limit; the CLI writes
//! it where the user asked, as the user (walinkd, a hardened service, may
//! write only its own state directory). Beside its target first, renamed
//! into place once whole and matching the SHA-256 walinkd checked.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Failure, Output, call, exit};
use crate::ipc::client::Client;
use crate::ipc::protocol::{MediaPartResult, MediaResult, method};
use crate::messages::media::file_name;

/// Mode of a fetched file.
const FILE_MODE: u32 = 0o640;

/// Fetches message `id`'s file to `output` (a file, or a directory for
/// `ID.EXT`; the current directory when `None`).
pub(super) async fn fetch(
    client: &mut Client,
    out: &Output,
    account: &str,
    id: &str,
    output: Option<&Path>,
) -> Result<MediaResult, Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::usage("cannot tell the current directory", e))?;
    let transfer = super::files::transfer_id();
    let quiet = Output { json: false };
    let part = |n: u32| json!({"account": account, "id": id, "transfer": transfer, "part": n});
    let first: MediaPartResult = call(client, &quiet, method::MEDIA_PART, part(0), "media").await?;
    let target = match output {
        Some(o) if !o.is_dir() => cwd.join(o),
        dir => cwd
            .join(dir.unwrap_or(Path::new("")))
            .join(file_name(id, first.mimetype.as_deref())),
    };
    let partial = partial_of(&target);
    let written = async {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&partial)
            .map_err(|e| cannot_write(&partial, e))?;
        // The umask may have taken bits off the mode asked for.
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| cannot_write(&partial, e))?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut this = first.clone();
        loop {
            let data = STANDARD
                .decode(this.data.as_bytes())
                .map_err(|e| refused(format!("walinkd sent a part that is not base64: {e}")))?;
            hash.update(&data);
            size += data.len() as u64;
            file.write_all(&data)
                .map_err(|e| cannot_write(&partial, e))?;
            if this.part + 1 >= this.parts {
                break;
            }
            this = call(
                client,
                &quiet,
                method::MEDIA_PART,
                part(this.part + 1),
                "media",
            )
            .await?;
        }
        let sha256: String = hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if size != first.size || sha256 != first.sha256 {
            return Err(refused(format!(
                "the file came over the socket as {size} bytes of SHA-256 {sha256}, not the {} bytes of SHA-256 {} walinkd checked; fetch it again",
                first.size, first.sha256
            )));
        }
        file.sync_all().map_err(|e| cannot_write(&partial, e))?;
        std::fs::rename(&partial, &target).map_err(|e| cannot_write(&target, e))?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    // The rename is durable once the directory is.
    if let Some(dir) = target.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    let result = MediaResult {
        account: account.to_owned(),
        id: id.to_owned(),
        path: target.to_string_lossy().into_owned(),
        kind: first.kind,
        size: first.size,
        sha256: first.sha256,
        mimetype: first.mimetype,
        filename: first.filename,
    };
    if out.json {
        out.json(&serde_json::to_value(&result).unwrap_or_default());
    }
    Ok(result)
}

/// The file written before the rename: hidden, beside the target, unique
/// to this fetch.
fn partial_of(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "media".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.part-{}", std::process::id()))
}

fn cannot_write(path: &Path, e: std::io::Error) -> Failure {
    refused(format!(
        "cannot write {}: {e}; choose a path you may write",
        path.display()
    ))
}

fn refused(why: String) -> Failure {
    Failure {
        what: "media".into(),
        why,
        code: exit::REFUSED,
    }
}
