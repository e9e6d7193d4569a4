//! What walink writes for an outbox record — a text, a reply, a reaction,
//! a file with its caption, an edit or a deletion for everyone — built in
//! one place, so a first send and the
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
        return wacore::proto_helpers::build_reaction_message(key, text, now_ms());
    }
    if let Some(context) = context
        && let Some(change) = change(to, text, context)
    {
        return change;
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

/// An edit or a deletion for everyone of a message this account sent, as
/// WhatsApp Web writes them: a protocol message naming it by key (the
/// library gives the stanza its `edit` attribute from this content).
fn change(to: &str, text: &str, context: &Context) -> Option<Message> {
    use whatsapp_rust::waproto::whatsapp::message::ProtocolMessage;
    use whatsapp_rust::waproto::whatsapp::message::protocol_message::Type;
    let (target, kind) = match (&context.edit_of, &context.revoke_of) {
        (Some(id), _) => (id, Type::MESSAGE_EDIT),
        (None, Some(id)) => (id, Type::REVOKE),
        (None, None) => return None,
    };
    let key = MessageKey {
        remote_jid: Some(to.to_string()),
        from_me: Some(true),
        id: Some(target.clone()),
        // In a group the key names its sender: this account.
        participant: to
            .ends_with("@g.us")
            .then(|| context.sender.clone())
            .flatten(),
    };
    let edited = (kind == Type::MESSAGE_EDIT).then(|| Message {
        conversation: Some(text.to_string()),
        ..Default::default()
    });
    Some(Message {
        protocol_message: buffa::MessageField::some(ProtocolMessage {
            key: buffa::MessageField::some(key),
            r#type: Some(kind),
            edited_message: edited.map(buffa::MessageField::some).unwrap_or_default(),
            timestamp_ms: Some(now_ms()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use wacore::types::message::EditAttribute;
    use whatsapp_rust::waproto::whatsapp::message::protocol_message::Type;

    fn context() -> Context {
        Context {
            reply_to: None,
            react_to: None,
            edit_of: None,
            revoke_of: None,
            sender: Some("15550000001@s.whatsapp.net".into()),
            from_me: true,
            text: None,
        }
    }

    #[test]
    fn an_edit_and_a_deletion_name_the_message_by_key_and_get_their_stanza_attribute() {
        let to = "15557654321@s.whatsapp.net";
        let edit = Context {
            edit_of: Some("3EB0AA".into()),
            ..context()
        };
        let message = outgoing_message(to, "new words", Some(&edit), None);
        let protocol = message.protocol_message.as_option().unwrap();
        assert_eq!(protocol.r#type, Some(Type::MESSAGE_EDIT));
        let key = protocol.key.as_option().unwrap();
        assert_eq!(
            (key.id.as_deref(), key.from_me, key.remote_jid.as_deref()),
            (Some("3EB0AA"), Some(true), Some(to))
        );
        assert_eq!(key.participant, None, "one to one: no participant");
        let edited = protocol.edited_message.as_option().unwrap();
        assert_eq!(edited.conversation.as_deref(), Some("new words"));
        assert_eq!(
            EditAttribute::infer_from_message(&message),
            Some(EditAttribute::MessageEdit)
        );

        let revoke = Context {
            revoke_of: Some("3EB0AA".into()),
            ..context()
        };
        let message = outgoing_message("120363000000000001@g.us", "", Some(&revoke), None);
        let protocol = message.protocol_message.as_option().unwrap();
        assert_eq!(protocol.r#type, Some(Type::REVOKE));
        assert!(protocol.edited_message.as_option().is_none());
        assert_eq!(
            protocol.key.as_option().unwrap().participant.as_deref(),
            Some("15550000001@s.whatsapp.net"),
            "in a group the key names this account"
        );
        assert_eq!(
            EditAttribute::infer_from_message(&message),
            Some(EditAttribute::SenderRevoke)
        );
    }
}
