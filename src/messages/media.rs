//! Received files: which ones are fetched as they arrive, what they are
//! named on disk, and fetching one into place (written beside its target,
//! checked, given mode 0640, then renamed, so a half-written or unverified
//! file never carries the name).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::store::{MediaLookup, MessageStore, StoreError, StoredMedia};
use crate::wa::{MediaError, Session};

/// Kinds of media a message can carry, as `kind` names them.
pub const KINDS: &[&str] = &["image", "video", "audio", "voice", "document", "sticker"];

/// Mode of every file walink saves: the owner writes, its group reads.
const FILE_MODE: u32 = 0o640;
/// Mode of a media directory walink creates.
const DIR_MODE: u32 = 0o750;

/// Which received files are fetched as they arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoDownload {
    /// Kinds from [`KINDS`].
    pub kinds: Vec<String>,
    /// Larger files are left for `walink media`.
    pub max_bytes: u64,
}

impl AutoDownload {
    /// Whether a file of `kind` and `size` (as its message says) is fetched
    /// as it arrives; one of unknown size is, since the host's length is
    /// checked against the limit only after the fact.
    pub fn wants(&self, kind: &str, size: Option<u64>) -> bool {
        self.kinds.iter().any(|k| k == kind) && size.is_none_or(|s| s <= self.max_bytes)
    }
}

/// An account's media settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Where files fetched as they arrive are saved.
    pub dir: PathBuf,
    /// `None`: nothing is fetched until asked for.
    pub auto: Option<AutoDownload>,
}

/// Where a fetched file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Exactly this file (replaced if it exists).
    File(PathBuf),
    /// This directory, under [`file_name`].
    Dir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("there is no message {0}")]
    UnknownMessage(String),
    #[error("message {id} is a {kind} message; it has no file to fetch")]
    NoMedia { id: String, kind: String },
    #[error("{0}")]
    Media(#[from] MediaError),
    #[error(
        "walinkd cannot write {path}: {source}; it writes the file itself, so choose a directory walinkd may write"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A file saved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub path: PathBuf,
    pub kind: String,
    pub size: u64,
    /// Of the file, hex.
    pub sha256: String,
    pub mimetype: Option<String>,
    pub filename: Option<String>,
}

/// The name a fetched file gets: the message id (letters and digits, as
/// WhatsApp makes them) and the usual extension of its mimetype.
pub fn file_name(id: &str, mimetype: Option<&str>) -> String {
    let safe: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    let safe = if safe.is_empty() {
        "media".into()
    } else {
        safe
    };
    match mimetype.and_then(extension) {
        Some(ext) => format!("{safe}.{ext}"),
        None => safe,
    }
}

/// The usual extension of `mimetype` (parameters such as `; codecs=opus`
/// ignored), for the types WhatsApp carries.
fn extension(mimetype: &str) -> Option<&'static str> {
    let essence = mimetype.split(';').next()?.trim().to_ascii_lowercase();
    Some(match essence.as_str() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "video/quicktime" => "mov",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" | "audio/aac" => "m4a",
        "audio/amr" => "amr",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.ms-powerpoint" => "ppt",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        _ => return None,
    })
}

/// The file message `id` carries.
pub async fn find(store: &MessageStore, id: &str) -> Result<StoredMedia, FetchError> {
    match store.media_of(id).await? {
        MediaLookup::NoMessage => Err(FetchError::UnknownMessage(id.to_owned())),
        MediaLookup::NoMedia { kind } => Err(FetchError::NoMedia {
            id: id.to_owned(),
            kind,
        }),
        MediaLookup::Media(media) => Ok(*media),
    }
}

/// Downloads, decrypts and checks `media`'s file and puts it at `to`.
pub async fn save(
    session: &Session,
    media: &StoredMedia,
    to: &Destination,
) -> Result<Saved, FetchError> {
    let target = match to {
        Destination::File(path) => path.clone(),
        Destination::Dir(dir) => dir.join(file_name(&media.id, media.meta.mimetype.as_deref())),
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
        .to_owned();
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(&dir)
        .map_err(write_err(&dir))?;
    // Unique per fetch: two fetches of one file never share a partial.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let partial = dir.join(format!(
        ".{}.part-{}-{}",
        file_name(&media.id, None),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&partial)
        .map_err(write_err(&partial))?;
    let fetched = async {
        // The umask may have taken bits off the mode asked for.
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(write_err(&partial))?;
        let fetched = session.download_media(&media.fetch, file).await?;
        std::fs::rename(&partial, &target).map_err(write_err(&target))?;
        Ok::<_, FetchError>(fetched)
    }
    .await;
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // The rename is durable once the directory is.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Saved {
        path: target,
        kind: media.fetch.kind.clone(),
        size: fetched.size,
        sha256: fetched.sha256,
        mimetype: media.meta.mimetype.clone(),
        filename: media.meta.filename.clone(),
    })
}

/// Whether walinkd may save files in `dir` (created if missing): a probe
/// file is made and removed.
pub fn check_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let probe = dir.join(format!(".walink-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// A file fetched and checked, held for a client to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub kind: String,
    pub size: u64,
    /// Of the file, hex.
    pub sha256: String,
    pub mimetype: Option<String>,
    pub filename: Option<String>,
}

/// Downloads, decrypts and checks `media`'s file into `out`.
pub async fn fetch_into(
    session: &Session,
    media: &StoredMedia,
    out: std::fs::File,
) -> Result<Checked, FetchError> {
    let fetched = session.download_media(&media.fetch, out).await?;
    Ok(Checked {
        kind: media.fetch.kind.clone(),
        size: fetched.size,
        sha256: fetched.sha256,
        mimetype: media.meta.mimetype.clone(),
        filename: media.meta.filename.clone(),
    })
}

/// Fetches message `id`'s file into the media directory `dir` and
/// records where it is, so the message shows it.
pub async fn save_into(
    store: &MessageStore,
    session: &Session,
    id: &str,
    dir: &Path,
) -> Result<Saved, FetchError> {
    let media = find(store, id).await?;
    let saved = save(session, &media, &Destination::Dir(dir.to_owned())).await?;
    store
        .set_media_path(id, &saved.path.to_string_lossy())
        .await?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_message_id_and_mimetype() {
        assert_eq!(file_name("3EB0ABC", Some("image/jpeg")), "3EB0ABC.jpg");
        assert_eq!(
            file_name("3EB0ABC", Some("audio/ogg; codecs=opus")),
            "3EB0ABC.ogg"
        );
        assert_eq!(file_name("ID", Some("APPLICATION/PDF")), "ID.pdf");
        assert_eq!(file_name("ID", Some("application/x-unheard-of")), "ID");
        assert_eq!(file_name("ID", None), "ID");
        // Nothing of an id can climb out of the directory.
        assert_eq!(file_name("../../etc/passwd", None), "etcpasswd");
        assert_eq!(file_name("/..", Some("image/png")), "media.png");
    }

    #[test]
    fn auto_download_takes_chosen_kinds_up_to_the_limit() {
        let auto = AutoDownload {
            kinds: vec!["image".into(), "document".into()],
            max_bytes: 1000,
        };
        assert!(auto.wants("image", Some(1000)));
        assert!(auto.wants("document", None));
        assert!(!auto.wants("image", Some(1001)));
        assert!(!auto.wants("video", Some(1)));
        assert!(!auto.wants("text", None));
    }
}
