//! Files arriving for `send --file`: `send_file_part` calls fill a transfer
//! in memory (bounded by `daemon.send_file_max_mib` and by how many may
//! arrive at once); the `send` naming it takes the bytes, and the outbox
//! commits them with the message before `send` answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::ipc::protocol::{RpcError, SendFilePartParams, SendFilePartResult};

/// Files that may be arriving at once (their bytes are held in memory).
const MAX_TRANSFERS: usize = 8;
/// A transfer not added to for this long was abandoned by its client.
const ABANDONED_AFTER: Duration = Duration::from_secs(600);

struct Transfer {
    size: u64,
    next: u32,
    data: Vec<u8>,
    touched: Instant,
}

#[derive(Default)]
pub struct Transfers(Mutex<HashMap<(String, String), Transfer>>);

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

impl Transfers {
    /// Adds part `p` to its transfer; `max_bytes` bounds the file.
    pub fn part(
        &self,
        p: SendFilePartParams,
        max_bytes: u64,
    ) -> Result<SendFilePartResult, RpcError> {
        if p.size > max_bytes {
            return Err(RpcError::invalid_params(format!(
                "the file is {} ({} bytes); walinkd takes files up to {} (daemon.send_file_max_mib in walink.toml)",
                mib(p.size),
                p.size,
                mib(max_bytes)
            )));
        }
        let chunk = STANDARD
            .decode(p.data.as_bytes())
            .map_err(|e| RpcError::invalid_params(format!("data is not base64: {e}")))?;
        let key = (p.account.clone(), p.transfer.clone());
        let mut transfers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        transfers.retain(|_, t| t.touched.elapsed() < ABANDONED_AFTER);
        if p.part == 0 {
            transfers.remove(&key);
            if transfers.len() >= MAX_TRANSFERS {
                return Err(RpcError::invalid_params(format!(
                    "{MAX_TRANSFERS} files are arriving already; retry once one of them is sent"
                )));
            }
            transfers.insert(
                key.clone(),
                Transfer {
                    size: p.size,
                    next: 0,
                    data: Vec::new(),
                    touched: Instant::now(),
                },
            );
        }
        let transfer = transfers
            .get_mut(&key)
            .filter(|t| t.next == p.part && t.size == p.size)
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "file part {} of transfer {:?} was not expected; start again with part 0",
                    p.part, p.transfer
                ))
            })?;
        if transfer.data.len() as u64 + chunk.len() as u64 > transfer.size {
            transfers.remove(&key);
            return Err(RpcError::invalid_params(format!(
                "transfer {:?} is larger than the {} bytes its parts announced; start again with part 0",
                p.transfer, p.size
            )));
        }
        transfer.data.extend_from_slice(&chunk);
        transfer.next += 1;
        transfer.touched = Instant::now();
        Ok(SendFilePartResult {
            transfer: p.transfer,
            received: transfer.data.len() as u64,
            size: transfer.size,
        })
    }

    /// The whole file of a transfer, which ends it.
    pub fn take(&self, account: &str, transfer: &str) -> Result<Vec<u8>, RpcError> {
        let key = (account.to_owned(), transfer.to_owned());
        let mut transfers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match transfers.get(&key) {
            None => Err(RpcError::invalid_params(format!(
                "account {account} has no file transfer {transfer:?}; send the file's parts with send_file_part first"
            ))),
            Some(t) if (t.data.len() as u64) < t.size => Err(RpcError::invalid_params(format!(
                "transfer {transfer:?} has {} of its {} bytes; send the remaining parts first",
                t.data.len(),
                t.size
            ))),
            Some(_) => Ok(transfers.remove(&key).map(|t| t.data).unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(transfer: &str, part: u32, size: u64, bytes: &[u8]) -> SendFilePartParams {
        SendFilePartParams {
            account: "sales".into(),
            transfer: transfer.into(),
            part,
            size,
            data: STANDARD.encode(bytes),
        }
    }

    #[test]
    fn parts_in_order_make_the_file() {
        let transfers = Transfers::default();
        let r = transfers.part(part("t1", 0, 5, b"hel"), 10).unwrap();
        assert_eq!((r.received, r.size), (3, 5));
        let early = transfers.take("sales", "t1").unwrap_err();
        assert!(
            early.message.contains("3 of its 5 bytes"),
            "{}",
            early.message
        );
        transfers.part(part("t1", 1, 5, b"lo"), 10).unwrap();
        assert_eq!(transfers.take("sales", "t1").unwrap(), b"hello");
        // Taken: gone.
        assert!(transfers.take("sales", "t1").is_err());
    }

    #[test]
    fn too_large_out_of_order_or_overfull_is_refused() {
        let transfers = Transfers::default();
        let big = transfers
            .part(part("t", 0, 3 << 20, b"x"), 2 << 20)
            .unwrap_err();
        assert!(
            big.message.contains("3.0 MiB") && big.message.contains("send_file_max_mib"),
            "{}",
            big.message
        );
        transfers.part(part("t", 0, 4, b"ab"), 10).unwrap();
        let skipped = transfers.part(part("t", 2, 4, b"cd"), 10).unwrap_err();
        assert!(
            skipped.message.contains("start again"),
            "{}",
            skipped.message
        );
        let over = transfers.part(part("t", 1, 4, b"cde"), 10).unwrap_err();
        assert!(over.message.contains("larger than"), "{}", over.message);
        assert!(transfers.take("sales", "t").is_err());
        for i in 0..MAX_TRANSFERS {
            transfers
                .part(part(&format!("n{i}"), 0, 1, b""), 10)
                .unwrap();
        }
        let busy = transfers.part(part("one-more", 0, 1, b""), 10).unwrap_err();
        assert!(
            busy.message.contains("arriving already"),
            "{}",
            busy.message
        );
    }
}
