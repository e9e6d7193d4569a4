//! An account's `media_dir`, `auto_download` and `auto_download_max_mib`.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{ConfigError, Locator, absolute_path};
use crate::messages::media::KINDS;

pub const DEFAULT_AUTO_DOWNLOAD_MAX_MIB: u64 = 16;
/// WhatsApp's own limit for a document is 2 GiB.
const MAX_AUTO_DOWNLOAD_MIB: i64 = 2048;

/// Where an account's received files go, and which are fetched as they arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// `media_dir`; by default `STATE_DIR/media/ACCOUNT`.
    pub dir: PathBuf,
    /// Kinds fetched as they arrive; empty (the default): none.
    pub auto_download: Vec<String>,
    /// Files larger than this (as their message says) are left for `walink media`.
    pub auto_download_max_mib: u64,
}

impl MediaConfig {
    /// The defaults of account `name` under `state_dir`.
    pub fn default_for(state_dir: &Path, name: &str) -> MediaConfig {
        MediaConfig {
            dir: state_dir.join("media").join(name),
            auto_download: Vec::new(),
            auto_download_max_mib: DEFAULT_AUTO_DOWNLOAD_MAX_MIB,
        }
    }
}

/// The keys as written.
pub(super) struct RawMedia {
    pub(super) dir: Option<Spanned<String>>,
    pub(super) auto_download: Option<Spanned<Vec<String>>>,
    pub(super) max_mib: Option<Spanned<i64>>,
}

impl RawMedia {
    pub(super) fn validate(
        self,
        defaults: MediaConfig,
        at: &Locator<'_>,
    ) -> Result<MediaConfig, ConfigError> {
        let mut media = defaults;
        if let Some(dir) = self.dir {
            media.dir = absolute_path(&dir, "account.media_dir", at)?;
        }
        if let Some(kinds) = self.auto_download {
            for kind in kinds.get_ref() {
                if !KINDS.contains(&kind.as_str()) {
                    return Err(at.invalid(
                        kinds.span(),
                        "account.auto_download",
                        Some(format!("{kind:?}")),
                        &format!(
                            "is not a kind of media; the kinds are {} (or [] for none)",
                            KINDS.join(", ")
                        ),
                    ));
                }
            }
            let mut kinds = kinds.into_inner();
            kinds.sort();
            kinds.dedup();
            media.auto_download = kinds;
        }
        if let Some(max) = self.max_mib {
            let mib = *max.get_ref();
            if !(1..=MAX_AUTO_DOWNLOAD_MIB).contains(&mib) {
                return Err(at.invalid(
                    max.span(),
                    "account.auto_download_max_mib",
                    Some(mib.to_string()),
                    &format!("must be 1 to {MAX_AUTO_DOWNLOAD_MIB} MiB"),
                ));
            }
            media.auto_download_max_mib = mib as u64;
        }
        Ok(media)
    }
}
