//! What walink writes for an outbox record — a text, a reply or a reaction —
//! built in one place, so a first send and the resend a retry receipt asks
//! for are the same message.

use whatsapp_rust::waproto::whatsapp::{Message, MessageKey};

use crate::store::Context;

/// The message `text` to `to` stands for, with what its context says it
/// answers or reacts to (for a reaction, `text` is the emoji).
pub fn outgoing_message(to: &str, text: &str, context: Option<&Context>) -> Message {
    use wacore::proto_helpers::MessageBuilderExt;
    let Some(context) = context else {
        return plain_text(text);
    };
    if let Some(target) = &context.react_to {
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
    let Some(reply_to) = &context.reply_to else {
        return plain_text(text);
    };
    let quoted = Message {
        conversation: context.text.clone(),
        ..Default::default()
    };
    let sender = context.sender.clone().unwrap_or_else(|| to.to_string());
    Message::text_with_context(
        text,
        wacore::proto_helpers::build_quote_context(reply_to, sender, &quoted),
    )
}

fn plain_text(text: &str) -> Message {
    Message {
        conversation: Some(text.to_string()),
        ..Default::default()
    }
}
