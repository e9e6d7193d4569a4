//! What walink writes for an outbox record — a text, a reply, a reaction
//! or a file with its caption — built in one place, so a first send and the
//! resend a retry receipt asks for are the same message.

use whatsapp_rust::buffa;
use whatsapp_rust::waproto::whatsapp::{ContextInfo, Message, MessageKey};

use crate::store::{Context, MediaKind, OutgoingMedia, Uploaded};

/// The message `text` to `to` stands for, with what its context says it
/// answers or reacts to (for a reaction, `text` is the emoji), and the
/// uploaded file it carries (`text` is then its caption).
pub fn outgoing_message(
    to: &str,
    text: &str,
    context: Option<&Context>,
    media: Option<(&OutgoingMedia, &Uploaded)>,
) -> Message {
    use wacore::proto_helpers::MessageBuilderExt;
    if let Some((context, target)) = context.and_then(|c| c.react_to.as_ref().map(|t| (c, t))) {
        let key = MessageKey {
            remote_jid: Some(to.to_string()),
            from_me: Some(context.from_me),
            id: Some(target.clone()),
            participant: to
                .ends_with("@g.us")
                .then(|| context.sender.clone())
                .flatten(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        return wacore::proto_helpers::build_reaction_message(key, text, now);
    }
    let quote = context.and_then(|c| quote(to, c));
    if let Some((media, uploaded)) = media {
        return file_message(text, media, uploaded, quote);
    }
    match quote {
        Some(quote) => Message::text_with_context(text, quote),
        None => Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        },
    }
}

/// The quote a reply carries.
fn quote(to: &str, context: &Context) -> Option<ContextInfo> {
    let reply_to = context.reply_to.as_ref()?;
    let quoted = Message {
        conversation: context.text.clone(),
        ..Default::default()
    };
    let sender = context.sender.clone().unwrap_or_else(|| to.to_string());
    Some(wacore::proto_helpers::build_quote_context(
        reply_to, sender, &quoted,
    ))
}

/// The fields every kind of file message carries, as the library's own
/// builders (`whatsapp_rust::media`) set them from an upload; built here
/// because the upload's answer is rebuilt from the outbox, not kept as the
/// library's type.
macro_rules! file_fields {
    ($ty:ident, $media:expr, $uploaded:expr, $context:expr, { $($extra:tt)* }) => {
        buffa::MessageField::some($ty {
            url: Some($uploaded.url.clone()),
            direct_path: Some($uploaded.direct_path.clone()),
            media_key: Some($media.media_key.to_vec()),
            file_sha256: Some($uploaded.file_sha256.to_vec()),
            file_enc_sha256: Some($uploaded.file_enc_sha256.to_vec()),
            file_length: Some($uploaded.file_length),
            media_key_timestamp: Some($uploaded.media_key_timestamp),
            mimetype: Some($media.mimetype.clone()),
            context_info: $context.map(buffa::MessageField::some).unwrap_or_default(),
            $($extra)*
            ..Default::default()
        })
    };
}

fn file_message(
    caption: &str,
    media: &OutgoingMedia,
    uploaded: &Uploaded,
    quote: Option<ContextInfo>,
) -> Message {
    use whatsapp_rust::waproto::whatsapp::message::{
        AudioMessage, DocumentMessage, ImageMessage, VideoMessage,
    };
    let caption = (!caption.is_empty()).then(|| caption.to_string());
    match media.kind {
        MediaKind::Image => Message {
            image_message: file_fields!(ImageMessage, media, uploaded, quote, { caption, }),
            ..Default::default()
        },
        MediaKind::Video => Message {
            video_message: file_fields!(VideoMessage, media, uploaded, quote, { caption, }),
            ..Default::default()
        },
        // An audio message has no caption: walink refuses one at accept.
        MediaKind::Audio => Message {
            audio_message: file_fields!(AudioMessage, media, uploaded, quote, {}),
            ..Default::default()
        },
        MediaKind::Document => Message {
            document_message: file_fields!(DocumentMessage, media, uploaded, quote, {
                title: media.filename.clone(),
                file_name: media.filename.clone(),
                caption,
            }),
            ..Default::default()
        },
    }
}

/// The library's name for the kind of a file.
pub(super) fn media_type(kind: MediaKind) -> wacore::download::MediaType {
    use wacore::download::MediaType;
    match kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Video => MediaType::Video,
        MediaKind::Audio => MediaType::Audio,
        MediaKind::Document => MediaType::Document,
    }
}
