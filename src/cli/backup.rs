//! `walink backup`, `backups`, `restore`, `clear-session`, `export`, `import`.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::transfer::{self, Secret};
use super::{Failure, Output, call, exit, now};
use crate::ipc::client::Client;
use crate::ipc::protocol::{
    ActionResult, BackupResult, BackupsResult, ExportResult, ImportResult, MAX_IMPORT_PART,
    RestoreResult, SnapshotEntry, method,
};

fn refused(what: &str, why: impl std::fmt::Display) -> Failure {
    Failure {
        what: what.to_owned(),
        why: why.to_string(),
        code: exit::REFUSED,
    }
}

fn ago(at: u64, now: u64) -> String {
    let secs = now.saturating_sub(at);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// The `walink backups` table.
pub fn table(snapshots: &[SnapshotEntry], now: u64) -> String {
    if snapshots.is_empty() {
        return "no backups yet\n".into();
    }
    let mut out = format!(
        "{:>5}  {:<10}  {:>10}  {:<13}  {:<6}  {:<12}  {}\n",
        "ID", "TAKEN", "SIZE", "REASON", "SEALED", "CHECKSUM", "JID"
    );
    for s in snapshots {
        out.push_str(&format!(
            "{:>5}  {:<10}  {:>10}  {:<13}  {:<6}  {:<12}  {}\n",
            s.id,
            ago(s.created_at, now),
            s.size_bytes,
            s.reason,
            if s.sealed { "yes" } else { "no" },
            s.checksum.get(..12).unwrap_or(&s.checksum),
            s.jid.as_deref().unwrap_or("-"),
        ));
    }
    out
}

pub async fn backup(client: &mut Client, out: &Output, account: &str) -> Result<u8, Failure> {
    let r: BackupResult = call(
        client,
        out,
        method::BACKUP,
        json!({"account": account}),
        "backup",
    )
    .await?;
    if !out.json {
        let verb = if r.created {
            "stored"
        } else {
            "unchanged since"
        };
        println!(
            "{}: {verb} backup {} ({} bytes)",
            r.account, r.snapshot.id, r.snapshot.size_bytes
        );
    }
    Ok(exit::OK)
}

pub async fn list(client: &mut Client, out: &Output, account: &str) -> Result<u8, Failure> {
    let r: BackupsResult = call(
        client,
        out,
        method::BACKUPS,
        json!({"account": account}),
        "backups",
    )
    .await?;
    if !out.json {
        print!("{}", table(&r.snapshots, now()));
    }
    Ok(exit::OK)
}

pub async fn restore(
    client: &mut Client,
    out: &Output,
    account: &str,
    snapshot: Option<u64>,
) -> Result<u8, Failure> {
    let r: RestoreResult = call(
        client,
        out,
        method::RESTORE,
        json!({"account": account, "snapshot": snapshot}),
        "restore",
    )
    .await?;
    if !out.json {
        for skipped in &r.skipped {
            eprintln!("walink: skipped: {skipped}");
        }
        println!(
            "{}: restored backup {}; {}",
            r.account, r.snapshot.id, r.state
        );
    }
    Ok(exit::OK)
}

pub async fn clear_session(
    client: &mut Client,
    out: &Output,
    account: &str,
    purge: bool,
) -> Result<u8, Failure> {
    let r: ActionResult = call(
        client,
        out,
        method::CLEAR_SESSION,
        json!({"account": account, "purge": purge}),
        "clear-session",
    )
    .await?;
    if !out.json {
        println!("{}: {}", r.account, r.state);
        if !purge {
            println!(
                "The last backup is kept: `walink restore {account}` undoes this, `--purge` deletes it."
            );
        }
    }
    Ok(exit::OK)
}

pub async fn export(
    client: &mut Client,
    out: &Output,
    account: &str,
    file: &Path,
    key_file: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
) -> Result<u8, Failure> {
    if file.exists() {
        return Err(Failure::usage(
            "export",
            format!("{} exists; give a new file name", file.display()),
        ));
    }
    let secret = transfer::secret_from(key_file, passphrase_file, true)
        .map_err(|why| Failure::usage("export", why))?;
    let quiet = Output { json: false };
    let r: ExportResult = call(
        client,
        &quiet,
        method::EXPORT,
        json!({"account": account}),
        "export",
    )
    .await?;
    let state = STANDARD
        .decode(r.data.as_bytes())
        .map_err(|e| refused("export", format!("walinkd sent no valid state: {e}")))?;
    let sealed = transfer::seal_export(&secret, &state).map_err(|why| refused("export", why))?;
    transfer::write_new_private(file, &sealed).map_err(|why| refused("export", why))?;
    if out.json {
        out.json(&json!({"account": r.account, "jid": r.jid, "file": file, "bytes": sealed.len()}));
    } else {
        println!(
            "{}: exported {} to {} ({} bytes, encrypted)",
            r.account,
            r.jid.as_deref().unwrap_or("(unlinked)"),
            file.display(),
            sealed.len()
        );
        println!(
            "Keep the file and its passphrase or key apart; anyone with both can act as this account."
        );
    }
    Ok(exit::OK)
}

pub async fn import(
    client: &mut Client,
    out: &Output,
    account: &str,
    file: &Path,
    key_file: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
) -> Result<u8, Failure> {
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::usage("import", format!("cannot read {}: {e}", file.display())))?;
    let secret: Secret = transfer::secret_from(key_file, passphrase_file, false)
        .map_err(|why| Failure::usage("import", why))?;
    let state = transfer::open_export(&secret, &bytes).map_err(|why| {
        refused(
            "import",
            format!("cannot decrypt {}: {why}", file.display()),
        )
    })?;
    let encoded = STANDARD.encode(&state);
    // Part boundaries on multiples of 4 keep every part valid base64.
    let part_len = MAX_IMPORT_PART - MAX_IMPORT_PART % 4;
    let parts: Vec<&str> = encoded
        .as_bytes()
        .chunks(part_len)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let transfer_id = format!("{}-{}", std::process::id(), now());
    let quiet = Output { json: false };
    let mut last = None;
    for (i, data) in parts.iter().enumerate() {
        let r: ImportResult = call(
            client,
            &quiet,
            method::IMPORT,
            json!({"account": account, "transfer": transfer_id, "part": i, "parts": parts.len(), "data": data}),
            "import",
        )
        .await?;
        last = Some(r);
    }
    let r = last.ok_or_else(|| refused("import", "the file holds no state"))?;
    if out.json {
        out.json(&serde_json::to_value(&r).unwrap_or_default());
    } else {
        println!(
            "{}: imported; {}",
            r.account,
            r.state.map_or("?".to_string(), |s| s.to_string())
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_newest_first_as_given() {
        let entry = |id, reason: &str| SnapshotEntry {
            id,
            created_at: 1000,
            jid: Some("1555:1@s.whatsapp.net".into()),
            size_bytes: 4096,
            schema_version: 1,
            checksum: "ab".repeat(32),
            sealed: id == 2,
            reason: reason.into(),
        };
        let text = table(&[entry(2, "scheduled"), entry(1, "paired")], 1000 + 7200);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("   ID"));
        assert!(
            lines[1].contains("scheduled")
                && lines[1].contains("2h ago")
                && lines[1].contains("yes")
        );
        assert!(lines[2].contains("paired") && lines[2].contains(" no "));
        assert_eq!(table(&[], 0), "no backups yet\n");
    }
}
