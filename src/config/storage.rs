//! `[storage]`: snapshots, validation and encryption at rest.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Locator, absolute_path};

pub const DEFAULT_SNAPSHOT_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_SNAPSHOT_GENERATIONS: usize = 12;
pub const DEFAULT_VALIDATE_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_SIZE_WARN_MIB: u64 = 256;
pub const DEFAULT_SIZE_CRITICAL_MIB: u64 = 1024;
const MAX_INTERVAL_SECS: u64 = 7 * 86_400;
const MAX_GENERATIONS: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Seconds between scheduled snapshots of each account.
    pub snapshot_interval_secs: u64,
    /// Snapshot generations kept per account.
    pub snapshot_generations: usize,
    /// Seconds between validations of each account's stored state.
    pub validate_interval_secs: u64,
    /// An account's state above this many MiB makes it degraded.
    pub size_warn_mib: u64,
    /// … and above this many, critical.
    pub size_critical_mib: u64,
    /// File holding the key that seals auth records and snapshots; `None`:
    /// `$CREDENTIALS_DIRECTORY/walink.key` when systemd passes it, else no
    /// encryption.
    pub key_file: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            snapshot_interval_secs: DEFAULT_SNAPSHOT_INTERVAL_SECS,
            snapshot_generations: DEFAULT_SNAPSHOT_GENERATIONS,
            validate_interval_secs: DEFAULT_VALIDATE_INTERVAL_SECS,
            size_warn_mib: DEFAULT_SIZE_WARN_MIB,
            size_critical_mib: DEFAULT_SIZE_CRITICAL_MIB,
            key_file: None,
        }
    }
}

impl StorageConfig {
    pub fn snapshot_interval(&self) -> Duration {
        Duration::from_secs(self.snapshot_interval_secs)
    }

    pub fn validate_interval(&self) -> Duration {
        Duration::from_secs(self.validate_interval_secs)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    snapshot_interval_secs: Option<Spanned<u64>>,
    snapshot_generations: Option<Spanned<i64>>,
    validate_interval_secs: Option<Spanned<u64>>,
    size_warn_mib: Option<Spanned<u64>>,
    size_critical_mib: Option<Spanned<u64>>,
    key_file: Option<Spanned<String>>,
}

fn seconds(
    value: Option<Spanned<u64>>,
    key: &str,
    default: u64,
    at: &Locator<'_>,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let secs = *value.get_ref();
    if !(1..=MAX_INTERVAL_SECS).contains(&secs) {
        return Err(at.invalid(
            value.span(),
            key,
            Some(secs.to_string()),
            &format!("must be between 1 and {MAX_INTERVAL_SECS} seconds"),
        ));
    }
    Ok(secs)
}

impl RawStorage {
    pub(super) fn validate(self, at: &Locator<'_>) -> Result<StorageConfig, ConfigError> {
        let d = StorageConfig::default();
        let snapshot_generations = match self.snapshot_generations {
            None => d.snapshot_generations,
            Some(n) if (1..=MAX_GENERATIONS).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                return Err(at.invalid(
                    n.span(),
                    "storage.snapshot_generations",
                    Some(n.get_ref().to_string()),
                    &format!("must be between 1 and {MAX_GENERATIONS}"),
                ));
            }
        };
        let size_warn_mib = self.size_warn_mib.map_or(d.size_warn_mib, |v| *v.get_ref());
        let size_critical_mib = match self.size_critical_mib {
            None => d.size_critical_mib.max(size_warn_mib),
            Some(v) if *v.get_ref() >= size_warn_mib && *v.get_ref() > 0 => *v.get_ref(),
            Some(v) => {
                return Err(at.invalid(
                    v.span(),
                    "storage.size_critical_mib",
                    Some(v.get_ref().to_string()),
                    &format!(
                        "must be at least storage.size_warn_mib ({size_warn_mib}) and above 0"
                    ),
                ));
            }
        };
        Ok(StorageConfig {
            snapshot_interval_secs: seconds(
                self.snapshot_interval_secs,
                "storage.snapshot_interval_secs",
                d.snapshot_interval_secs,
                at,
            )?,
            snapshot_generations,
            validate_interval_secs: seconds(
                self.validate_interval_secs,
                "storage.validate_interval_secs",
                d.validate_interval_secs,
                at,
            )?,
            size_warn_mib,
            size_critical_mib,
            key_file: self
                .key_file
                .map(|f| absolute_path(&f, "storage.key_file", at))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, Mode};
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/walink/walink.toml"), Mode::System)
    }

    #[test]
    fn defaults_and_shipped_config_agree() {
        assert_eq!(parse("").unwrap().storage, StorageConfig::default());
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/walink.toml");
        assert_eq!(
            Config::load(&shipped).unwrap().storage,
            StorageConfig::default()
        );
    }

    #[test]
    fn values_are_read_and_checked() {
        let c = parse(
            "[storage]\nsnapshot_interval_secs = 30\nsnapshot_generations = 3\n\
             validate_interval_secs = 5\nsize_warn_mib = 10\nsize_critical_mib = 20\n\
             key_file = \"/etc/walink/walink.key\"\n",
        )
        .unwrap()
        .storage;
        assert_eq!(c.snapshot_interval(), Duration::from_secs(30));
        assert_eq!(c.snapshot_generations, 3);
        assert_eq!(c.validate_interval(), Duration::from_secs(5));
        assert_eq!((c.size_warn_mib, c.size_critical_mib), (10, 20));
        assert_eq!(
            c.key_file.as_deref(),
            Some(Path::new("/etc/walink/walink.key"))
        );

        for (text, key, says) in [
            (
                "snapshot_generations = 0",
                "storage.snapshot_generations",
                "between 1 and 1000",
            ),
            (
                "snapshot_interval_secs = 0",
                "storage.snapshot_interval_secs",
                "between 1 and",
            ),
            (
                "key_file = \"walink.key\"",
                "storage.key_file",
                "absolute path",
            ),
            (
                "size_warn_mib = 50\nsize_critical_mib = 10",
                "storage.size_critical_mib",
                "at least storage.size_warn_mib",
            ),
        ] {
            let err = parse(&format!("[storage]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains(says), "{text}: {err}");
        }
        let err = parse("[storage]\nkeyfile = \"/k\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keyfile"), "{err}");
    }
}
