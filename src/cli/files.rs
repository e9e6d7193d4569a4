//! `walink send --file`: the CLI reads the file (walinkd, running as its
//! own user on a read-only system, may not be able to) and hands it to
//! walinkd in `send_file_part` calls, each within the socket's line limit,
//! then sends it with one `send`.

use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Failure, Output, call};
use crate::ipc::client::Client;
use crate::ipc::protocol::{MAX_FILE_PART, SendFilePartResult, SendResult, method};

/// Bytes per part: their base64 fills a part exactly.
const PART_BYTES: usize = MAX_FILE_PART / 4 * 3;

/// Opens `path` for sending, or says why it cannot be sent.
pub(super) fn open(path: &Path) -> Result<(std::fs::File, u64), Failure> {
    let cannot = |why: String| {
        Failure::usage(
            "send",
            format!("cannot read {}: {why}; check the path", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let meta = file.metadata().map_err(|e| cannot(e.to_string()))?;
    if !meta.is_file() {
        return Err(cannot("it is not a regular file".into()));
    }
    Ok((file, meta.len()))
}

/// What `send` sends besides the file.
pub(super) struct Message<'a> {
    pub account: &'a str,
    pub to: &'a str,
    pub caption: Option<&'a str>,
    pub as_document: bool,
    pub id: Option<&'a str>,
    pub wait: bool,
    pub reply_to: Option<&'a str>,
}

pub(super) async fn send(
    client: &mut Client,
    out: &Output,
    path: &Path,
    message: Message<'_>,
) -> Result<SendResult, Failure> {
    let (mut file, size) = open(path)?;
    let transfer = transfer_id();
    let quiet = Output { json: false };
    let mut buf = vec![0u8; PART_BYTES];
    let mut sent = 0u64;
    let mut part = 0u32;
    // At least one part, so an empty file starts its transfer too.
    while part == 0 || sent < size {
        // Never past the size announced: a file growing meanwhile is sent as it was.
        let want = PART_BYTES.min((size - sent) as usize);
        let n = read_up_to(&mut file, &mut buf[..want])
            .map_err(|e| Failure::usage("send", format!("cannot read {}: {e}", path.display())))?;
        if n == 0 && sent < size {
            return Err(Failure::usage(
                "send",
                format!(
                    "{} shrank while it was being read ({sent} of {size} bytes); send it again once it is complete",
                    path.display()
                ),
            ));
        }
        let _: SendFilePartResult = call(
            client,
            &quiet,
            method::SEND_FILE_PART,
            json!({"account": message.account, "transfer": transfer, "part": part,
                   "size": size, "data": STANDARD.encode(&buf[..n])}),
            "send",
        )
        .await?;
        sent += n as u64;
        part += 1;
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let params: Value = json!({
        "account": message.account,
        "to": message.to,
        "text": message.caption.unwrap_or_default(),
        "id": message.id,
        "wait": message.wait,
        "reply_to": message.reply_to,
        "file": {"transfer": transfer, "name": name, "as_document": message.as_document},
    });
    call(client, out, method::SEND, params, "send").await
}

/// Fills `buf` as far as the file goes.
fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A name for one file transfer over the socket, unique to this process
/// and moment.
pub(super) fn transfer_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}
