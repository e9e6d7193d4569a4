//! What kind of message a file goes out as: its mimetype from its first
//! bytes (a file's content says what it is more reliably than its name),
//! then its extension, and from the mimetype the kind WhatsApp shows it as.
//! Only formats WhatsApp plays inline become an image, a video or audio;
//! anything else goes as a document.

use sha2::{Digest, Sha256};

use crate::store::{MediaDraft, MediaKind, OutgoingMedia};

/// Mimetypes by extension, for files whose first bytes say nothing
/// specific (text, office files inside a zip, formats not sniffed below).
const BY_EXTENSION: &[(&str, &str)] = &[
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("png", "image/png"),
    ("webp", "image/webp"),
    ("gif", "image/gif"),
    ("mp4", "video/mp4"),
    ("m4v", "video/mp4"),
    ("3gp", "video/3gpp"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("m4a", "audio/mp4"),
    ("aac", "audio/aac"),
    ("ogg", "audio/ogg"),
    ("opus", "audio/ogg; codecs=opus"),
    ("amr", "audio/amr"),
    ("pdf", "application/pdf"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("json", "application/json"),
    ("zip", "application/zip"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("odt", "application/vnd.oasis.opendocument.text"),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
];

const OCTET_STREAM: &str = "application/octet-stream";

/// The mimetype the content starts like, if it is a format walink knows.
fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\xFF\xD8\xFF") {
        return Some("image/jpeg");
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some("image/gif");
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some("image/webp");
    }
    if at(0, b"%PDF-") {
        return Some("application/pdf");
    }
    if at(0, b"OggS") {
        let opus = head.windows(8).any(|w| w == b"OpusHead");
        return Some(if opus {
            "audio/ogg; codecs=opus"
        } else {
            "audio/ogg"
        });
    }
    if at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE6 == 0xE2) {
        return Some("audio/mpeg");
    }
    if at(0, b"#!AMR") {
        return Some("audio/amr");
    }
    if at(4, b"ftyp") {
        return Some(match head.get(8..12) {
            Some(b"M4A ") | Some(b"M4B ") => "audio/mp4",
            Some(b"qt  ") => "video/quicktime",
            Some(brand) if brand.starts_with(b"3g") => "video/3gpp",
            _ => "video/mp4",
        });
    }
    if at(0, b"PK\x03\x04") {
        return Some("application/zip");
    }
    None
}

fn by_extension(filename: &str) -> Option<&'static str> {
    let (_, ext) = filename.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    BY_EXTENSION
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, mime)| *mime)
}

/// The mimetype of a file named `filename` starting with `head`.
pub fn mimetype(filename: &str, head: &[u8]) -> &'static str {
    let named = by_extension(filename);
    match sniff(head) {
        // Office documents, and other formats inside a zip, are named by
        // their extension.
        Some("application/zip") => named.unwrap_or("application/zip"),
        Some(sniffed) => sniffed,
        // A name claiming a media format the content does not start like
        // would make a message no phone can play: send it as what it is.
        None => named
            .filter(|m| !is_media(m))
            .or_else(|| looks_like_text(head).then_some("text/plain"))
            .unwrap_or(OCTET_STREAM),
    }
}

fn is_media(mimetype: &str) -> bool {
    ["image/", "video/", "audio/"]
        .iter()
        .any(|p| mimetype.starts_with(p))
}

fn looks_like_text(head: &[u8]) -> bool {
    !head.is_empty()
        && std::str::from_utf8(head).is_ok_and(|t| {
            t.chars()
                .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        })
}

/// The kind a file of `mimetype` goes out as; `as_document` sends any file
/// as a document (its name shown, no preview).
pub fn kind(mimetype: &str, as_document: bool) -> MediaKind {
    if as_document {
        return MediaKind::Document;
    }
    match mimetype {
        "image/jpeg" | "image/png" | "image/webp" => MediaKind::Image,
        "video/mp4" | "video/3gpp" | "video/quicktime" => MediaKind::Video,
        m if m.starts_with("audio/") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

/// The name a document shows: the last component of what the client gave,
/// so no path of the sending machine goes out.
pub fn display_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).trim();
    (!base.is_empty() && base != "." && base != "..").then(|| base.to_owned())
}

/// How many leading bytes [`mimetype`] looks at.
const SNIFF_BYTES: usize = 512;

/// A file called `name` (as the client gave it; only its last component is
/// kept) to send, described, with a media key of its own.
pub fn draft(name: &str, data: Vec<u8>, as_document: bool) -> MediaDraft {
    let filename = display_name(name);
    let mimetype = mimetype(
        filename.as_deref().unwrap_or_default(),
        &data[..data.len().min(SNIFF_BYTES)],
    );
    let kind = kind(mimetype, as_document);
    let sha256 = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    MediaDraft {
        media: OutgoingMedia {
            kind,
            mimetype: mimetype.to_owned(),
            // Only a document shows its name.
            filename: filename.filter(|_| kind == MediaKind::Document),
            size: data.len() as u64,
            sha256,
            media_key: rand::random(),
            upload: None,
        },
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF";
    const MP4: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0";
    const M4A: &[u8] = b"\0\0\0\x20ftypM4A \0\0\0\0";
    const OPUS: &[u8] = b"OggS\0\x02\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\x01\x13OpusHead";

    #[test]
    fn content_decides_before_the_name() {
        assert_eq!(mimetype("photo.png", PNG), "image/png");
        // A JPEG named .png is a JPEG.
        assert_eq!(mimetype("photo.png", JPEG), "image/jpeg");
        assert_eq!(mimetype("noext", JPEG), "image/jpeg");
        assert_eq!(mimetype("clip.bin", MP4), "video/mp4");
        assert_eq!(mimetype("song", M4A), "audio/mp4");
        assert_eq!(mimetype("note.ogg", OPUS), "audio/ogg; codecs=opus");
        assert_eq!(mimetype("a.pdf", b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(mimetype("x", b"ID3\x04\0"), "audio/mpeg");
        assert_eq!(mimetype("x", b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
    }

    #[test]
    fn the_name_decides_what_content_cannot() {
        assert_eq!(
            mimetype("Report.DOCX", b"PK\x03\x04\x14\0"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        );
        assert_eq!(mimetype("archive", b"PK\x03\x04"), "application/zip");
        assert_eq!(mimetype("table.csv", b"a,b\n1,2\n"), "text/csv");
        assert_eq!(mimetype("README", b"plain words\n"), "text/plain");
        assert_eq!(mimetype("blob", b"\0\x01\x02\xFE"), OCTET_STREAM);
        assert_eq!(mimetype("empty", b""), OCTET_STREAM);
        // A media name on content that is not that format is not trusted.
        assert_eq!(mimetype("fake.jpg", b"\0\x01\x02\xFE"), OCTET_STREAM);
        assert_eq!(mimetype("fake.mp4", b"hello"), "text/plain");
    }

    #[test]
    fn the_kind_follows_the_mimetype_unless_forced() {
        assert_eq!(kind("image/jpeg", false), MediaKind::Image);
        assert_eq!(kind("image/png", false), MediaKind::Image);
        assert_eq!(kind("image/gif", false), MediaKind::Document);
        assert_eq!(kind("video/mp4", false), MediaKind::Video);
        assert_eq!(kind("audio/ogg; codecs=opus", false), MediaKind::Audio);
        assert_eq!(kind("application/pdf", false), MediaKind::Document);
        assert_eq!(kind("image/jpeg", true), MediaKind::Document);
        assert_eq!(kind("video/mp4", true), MediaKind::Document);
    }

    #[test]
    fn a_document_shows_only_the_file_name() {
        assert_eq!(
            display_name("/home/alice/q3 report.pdf").as_deref(),
            Some("q3 report.pdf")
        );
        assert_eq!(display_name("C:\\tmp\\a.txt").as_deref(), Some("a.txt"));
        assert_eq!(display_name("a.txt").as_deref(), Some("a.txt"));
        assert_eq!(display_name("dir/"), None);
        assert_eq!(display_name(".."), None);
    }

    #[test]
    fn a_draft_describes_its_file_and_keys_it_afresh() {
        let photo = draft("/tmp/cat.png", PNG.to_vec(), false);
        assert_eq!(photo.media.kind, MediaKind::Image);
        assert_eq!(photo.media.mimetype, "image/png");
        assert_eq!(photo.media.filename, None);
        assert_eq!(photo.media.size, PNG.len() as u64);
        assert_eq!(
            photo.media.sha256,
            Sha256::digest(PNG)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let doc = draft("/tmp/cat.png", PNG.to_vec(), true);
        assert_eq!(doc.media.kind, MediaKind::Document);
        assert_eq!(doc.media.mimetype, "image/png");
        assert_eq!(doc.media.filename.as_deref(), Some("cat.png"));
        assert_ne!(photo.media.media_key, doc.media.media_key);
    }
}
