//! Checks that every stored record of an account decodes.

use super::{Kind, SledBackend, meta};
use crate::store::StoreError;
use crate::store::codec::{self, CodecError, Record};
use crate::store::error::describe_key;
use crate::store::records::*;
use crate::store::seal::{self, SealError, Sealer};

/// How many problems a report spells out; the rest are only counted.
const MAX_LISTED_PROBLEMS: usize = 20;

/// Result of [`SledBackend::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records looked at.
    pub records: u64,
    /// Bytes of keys and values looked at.
    pub bytes: u64,
    /// A device record is present (keys exist, paired or not).
    pub has_device: bool,
    /// The device record is present, decodes, and is paired.
    pub registered: bool,
    /// Records that failed to decode.
    pub problem_count: u64,
    /// The first problems, each naming tree, key and cause.
    pub problems: Vec<String>,
    /// Records are sealed with a key other than the configured one (or no
    /// key is configured): not damage, and no backup restore will help.
    pub key_problem: Option<String>,
}

impl VerifyReport {
    /// Every record decodes.
    pub fn is_valid(&self) -> bool {
        self.problem_count == 0
    }

    pub(crate) fn check(&mut self, kind: Kind, key: &[u8], value: &[u8], sealer: Option<&Sealer>) {
        self.records += 1;
        self.bytes += (key.len() + value.len()) as u64;
        let checked = match seal::unseal(sealer, value, kind.name().as_bytes()) {
            Ok(plain) => check_record(kind, key, &plain, self),
            Err(e @ (SealError::WrongKey { .. } | SealError::NoKey { .. })) => {
                self.key_problem.get_or_insert_with(|| e.to_string());
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = checked {
            self.problem_count += 1;
            if self.problems.len() < MAX_LISTED_PROBLEMS {
                self.problems
                    .push(format!("{} {}: {reason}", kind.name(), describe_key(key)));
            }
        }
    }
}

fn decodes<R: Record>(value: &[u8]) -> Result<R, String> {
    codec::decode::<R>(value).map_err(|e: CodecError| e.to_string())
}

fn valid<R: Record>(value: &[u8]) -> Result<(), String> {
    decodes::<R>(value).map(|_| ())
}

fn check_record(
    kind: Kind,
    key: &[u8],
    value: &[u8],
    report: &mut VerifyReport,
) -> Result<(), String> {
    match kind {
        Kind::Meta => match key {
            meta::DEVICE => {
                report.has_device = true;
                let device = decodes::<DeviceState>(value)?.into_device()?;
                report.registered = device.is_registered();
            }
            meta::DEVICE_ID_SEQ => valid::<Counter>(value)?,
            meta::LATEST_SYNC_KEY_ID => valid::<Blob>(value)?,
            meta::WEB_VERSION => valid::<WebVersion>(value)?,
            _ => return Err("unknown meta key".into()),
        },
        Kind::Identities => valid::<IdentityKey>(value)?,
        Kind::Sessions
        | Kind::SignedPreKeys
        | Kind::SenderKeys
        | Kind::MutationMacs
        | Kind::BaseKeys
        | Kind::GroupMetadata => valid::<Blob>(value)?,
        Kind::PreKeys => valid::<PreKey>(value)?,
        Kind::SyncKeys => valid::<SyncKey>(value)?,
        Kind::AppStateVersions => decodes::<AppStateVersion>(value)?
            .into_hash_state()
            .map(|_| ())?,
        Kind::SenderKeyDevices => valid::<Flag>(value)?,
        Kind::LidMappings => valid::<LidMapping>(value)?,
        Kind::PnToLid => valid::<Text>(value)?,
        Kind::DeviceLists => valid::<DeviceList>(value)?,
        Kind::TcTokens => valid::<TcToken>(value)?,
    }
    Ok(())
}

impl SledBackend {
    /// Decodes every record of this account, at start and every minute
    /// (the records that grow with every message are in `messages.db`,
    /// which has its own check). Fails only when the database itself
    /// cannot be read; undecodable records are listed in the report.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        for kind in Kind::ALL {
            for item in self.rows(kind, &[]) {
                let (key, value) = item?;
                report.check(kind, &key, &value, self.sealer());
            }
        }
        // Reading every record churned sled's cache; what it evicted waits
        // in this thread's garbage bag until collected.
        crate::store::memory::release_freed_now_and_then();
        Ok(report)
    }
}
