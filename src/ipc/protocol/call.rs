//! A request decoded into the call it names, with the checks that need no
//! daemon state done here, once, for every client.

use serde_json::Value;

use super::*;

/// A request decoded and checked: what a `Handler` matches on. Validation
/// that needs no daemon state (shape, phone numbers, empty text) is done
/// here, once, for every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Status(AccountFilter),
    Health(AccountFilter),
    Initialize(AccountParams),
    Reconnect(AccountParams),
    ClearSession(ClearSessionParams),
    Restart(AccountParams),
    /// `to` is already normalized to a JID (see [`recipient_jid`]).
    Send(SendParams),
    Qr(AccountParams),
    /// `phone` is already normalized to digits (see [`normalize_phone`]).
    PairCode(PairCodeParams),
    Subscribe(AccountFilter),
    /// Checks the network path to WhatsApp with the account's settings
    /// (or the daemon's when no account is given).
    Diagnose(AccountFilter),
    Outbox(OutboxParams),
    Messages(MessagesParams),
    Chats(AccountParams),
    /// `check` is already normalized to digits.
    Contacts(ContactsParams),
    Groups(AccountParams),
    React(ReactParams),
    /// `path` or `dir` is set, absolute.
    Media(MediaParams),
    MediaPart(MediaPartParams),
    Edit(EditParams),
    Delete(DeleteParams),
    Backup(AccountParams),
    Backups(AccountParams),
    Restore(RestoreParams),
    Export(AccountParams),
    Import(ImportParams),
    SendFilePart(SendFilePartParams),
}

/// Longest idempotency key accepted by `send`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest text accepted by `send`, in bytes. WhatsApp takes 65,536
/// characters, but a request line is at most [`MAX_LINE_BYTES`], so this
/// leaves room for the rest of the request and names the real limit.
pub const MAX_TEXT_BYTES: usize = 60 * 1024;

impl Call {
    pub fn parse(method: &str, params: Value) -> Result<Call, RpcError> {
        Ok(match method {
            method::STATUS => Call::Status(parse_params(params)?),
            method::HEALTH => Call::Health(parse_params(params)?),
            method::INITIALIZE => Call::Initialize(parse_params(params)?),
            method::RECONNECT => Call::Reconnect(parse_params(params)?),
            method::CLEAR_SESSION => Call::ClearSession(parse_params(params)?),
            method::RESTART => Call::Restart(parse_params(params)?),
            method::QR => Call::Qr(parse_params(params)?),
            method::SUBSCRIBE => Call::Subscribe(parse_params(params)?),
            method::DIAGNOSE => Call::Diagnose(parse_params(params)?),
            method::SEND => {
                let mut send: SendParams = parse_params(params)?;
                send.to = recipient_jid(&send.to)
                    .map_err(|why| RpcError::invalid_recipient(&send.to, why))?;
                if let Some(file) = &send.file {
                    check_file(file).map_err(RpcError::invalid_params)?;
                } else {
                    check_text(&send.text)?;
                }
                if send.text.len() > MAX_TEXT_BYTES {
                    return Err(text_too_long(&send.text));
                }
                if let Some(key) = &send.id {
                    check_idempotency_key(key).map_err(RpcError::invalid_params)?;
                }
                if let Some(reply_to) = &send.reply_to {
                    check_message_id(reply_to).map_err(RpcError::invalid_params)?;
                }
                Call::Send(send)
            }
            method::OUTBOX => Call::Outbox(parse_params(params)?),
            method::CHATS => Call::Chats(parse_params(params)?),
            method::GROUPS => Call::Groups(parse_params(params)?),
            method::REACT => {
                let p: ReactParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                if p.emoji.chars().count() > MAX_EMOJI_CHARS {
                    return Err(RpcError::invalid_params(format!(
                        "emoji must be at most {MAX_EMOJI_CHARS} characters (one emoji; empty removes the reaction)"
                    )));
                }
                Call::React(p)
            }
            method::MEDIA => {
                let p: MediaParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                match (&p.path, &p.dir) {
                    (Some(path), None) | (None, Some(path))
                        if std::path::Path::new(path).is_absolute() => {}
                    _ => {
                        return Err(RpcError::invalid_params(
                            "give either path (a file) or dir (a directory), as an absolute path",
                        ));
                    }
                }
                Call::Media(p)
            }
            method::MEDIA_PART => {
                let p: MediaPartParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                check_transfer(&p.transfer).map_err(RpcError::invalid_params)?;
                Call::MediaPart(p)
            }
            method::EDIT => {
                let p: EditParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                check_text(&p.text)?;
                Call::Edit(p)
            }
            method::DELETE => {
                let p: DeleteParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                Call::Delete(p)
            }
            method::CONTACTS => {
                let mut p: ContactsParams = parse_params(params)?;
                if let Some(check) = &mut p.check {
                    if check.is_empty() || check.len() > MAX_CHECK {
                        return Err(RpcError::invalid_params(format!(
                            "check takes 1 to {MAX_CHECK} phone numbers"
                        )));
                    }
                    for phone in check.iter_mut() {
                        *phone = normalize_phone(phone).map_err(|why| {
                            RpcError::invalid_params(format!("check {phone:?}: {why}"))
                        })?;
                    }
                }
                Call::Contacts(p)
            }
            method::BACKUP => Call::Backup(parse_params(params)?),
            method::BACKUPS => Call::Backups(parse_params(params)?),
            method::RESTORE => Call::Restore(parse_params(params)?),
            method::EXPORT => Call::Export(parse_params(params)?),
            method::IMPORT => {
                let p: ImportParams = parse_params(params)?;
                if p.parts == 0 || p.part >= p.parts || p.data.len() > MAX_IMPORT_PART {
                    return Err(RpcError::invalid_params(format!(
                        "import parts are numbered 0 to parts-1, each at most {MAX_IMPORT_PART} base64 characters"
                    )));
                }
                Call::Import(p)
            }
            method::SEND_FILE_PART => {
                let p: SendFilePartParams = parse_params(params)?;
                check_transfer(&p.transfer).map_err(RpcError::invalid_params)?;
                if p.data.len() > MAX_FILE_PART {
                    return Err(RpcError::invalid_params(format!(
                        "a file part is at most {MAX_FILE_PART} base64 characters"
                    )));
                }
                Call::SendFilePart(p)
            }
            method::MESSAGES => {
                let mut p: MessagesParams = parse_params(params)?;
                if let Some(chat) = &p.chat {
                    p.chat = Some(
                        recipient_jid(chat)
                            .map_err(|why| RpcError::invalid_params(format!("chat: {why}")))?,
                    );
                }
                if p.limit.is_some_and(|l| !(1..=MAX_PAGE).contains(&l)) {
                    return Err(RpcError::invalid_params(format!(
                        "limit must be 1 to {MAX_PAGE}"
                    )));
                }
                if let Some(search) = &p.search
                    && (search.trim().is_empty() || search.len() > MAX_SEARCH)
                {
                    return Err(RpcError::invalid_params(format!(
                        "search must hold a word and be at most {MAX_SEARCH} bytes"
                    )));
                }
                Call::Messages(p)
            }
            method::PAIR_CODE => {
                let mut pair: PairCodeParams = parse_params(params)?;
                pair.phone = normalize_phone(&pair.phone)
                    .map_err(|why| RpcError::invalid_params(format!("phone: {why}")))?;
                Call::PairCode(pair)
            }
            other => return Err(RpcError::method_not_found(other)),
        })
    }

    /// The account the call is about; `None` for "all accounts".
    pub fn account(&self) -> Option<&str> {
        match self {
            Call::Status(f) | Call::Health(f) | Call::Subscribe(f) | Call::Diagnose(f) => {
                f.account.as_deref()
            }
            Call::Initialize(p)
            | Call::Reconnect(p)
            | Call::Backup(p)
            | Call::Backups(p)
            | Call::Export(p)
            | Call::Restart(p)
            | Call::Qr(p)
            | Call::Chats(p)
            | Call::Groups(p) => Some(&p.account),
            Call::Send(s) => Some(&s.account),
            Call::Outbox(p) => Some(&p.account),
            Call::Messages(p) => Some(&p.account),
            Call::Contacts(p) => Some(&p.account),
            Call::React(p) => Some(&p.account),
            Call::Media(p) => Some(&p.account),
            Call::MediaPart(p) => Some(&p.account),
            Call::Edit(p) => Some(&p.account),
            Call::Delete(p) => Some(&p.account),
            Call::PairCode(p) => Some(&p.account),
            Call::ClearSession(p) => Some(&p.account),
            Call::Restore(p) => Some(&p.account),
            Call::Import(p) => Some(&p.account),
            Call::SendFilePart(p) => Some(&p.account),
        }
    }
}

/// A message's text: not empty, at most [`MAX_TEXT_BYTES`].
fn check_text(text: &str) -> Result<(), RpcError> {
    if text.trim().is_empty() {
        return Err(RpcError::invalid_message(
            "text is empty; give the text to send",
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(text_too_long(text));
    }
    Ok(())
}

fn text_too_long(text: &str) -> RpcError {
    RpcError::invalid_message(format!(
        "text is {} bytes; at most {MAX_TEXT_BYTES} are accepted, split it",
        text.len()
    ))
}

/// A WhatsApp message id as `reply_to` and `react` take it.
fn check_message_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(format!(
            "message id {id:?} must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} letters and digits, as `walink messages` shows it"
        ));
    }
    Ok(())
}

fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(format!(
            "id must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes long"
        ));
    }
    if key.chars().any(|c| !c.is_ascii_graphic()) {
        return Err("id must be printable ASCII without spaces".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn call_parse_validates_once_for_everyone() {
        assert_eq!(
            Call::parse("status", Value::Null).unwrap(),
            Call::Status(AccountFilter { account: None })
        );
        let send = Call::parse(
            "send",
            json!({"account": "sales", "to": "+1 555 123 4567", "text": "hi", "id": "order-7"}),
        )
        .unwrap();
        let Call::Send(send) = send else {
            panic!("not a send: {send:?}")
        };
        assert_eq!(send.to, "15551234567@s.whatsapp.net");
        assert_eq!(send.id.as_deref(), Some("order-7"));
        assert!(send.wait, "waits for the ack unless told not to");

        let err = Call::parse(
            "send",
            json!({"account": "s", "to": "+15551234567", "text": "x".repeat(MAX_TEXT_BYTES + 1)}),
        )
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_MESSAGE);
        assert!(err.message.contains("at most"), "{}", err.message);

        let err = Call::parse("messages", json!({"account": "s", "limit": 0})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
        let Call::Messages(m) =
            Call::parse("messages", json!({"account": "s", "chat": "+15551234567"})).unwrap()
        else {
            panic!("not messages")
        };
        assert_eq!(m.chat.as_deref(), Some("15551234567@s.whatsapp.net"));

        let err =
            Call::parse("send", json!({"account": "s", "to": "12", "text": "hi"})).unwrap_err();
        assert_eq!(err.code, code::INVALID_RECIPIENT);
        assert!(err.message.contains("7 to 15"), "{}", err.message);

        let err = Call::parse(
            "send",
            json!({"account": "s", "to": "+15551234567", "text": "  "}),
        )
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_MESSAGE);

        let err = Call::parse(
            "send",
            json!({"account": "s", "to": "+15551234567", "text": "x", "id": "a b"}),
        )
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);

        let err = Call::parse("status", json!({"acount": "sales"})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
        assert!(err.message.contains("acount"), "{}", err.message);

        let err = Call::parse("initialize", json!({})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
        assert!(err.message.contains("account"), "{}", err.message);

        let err = Call::parse("status", json!([1])).unwrap_err();
        assert!(err.message.contains("must be an object"), "{}", err.message);

        let Call::PairCode(pair) = Call::parse(
            "pair_code",
            json!({"account": "s", "phone": "+49 151 1234 5678"}),
        )
        .unwrap() else {
            panic!("not pair_code")
        };
        assert_eq!(pair.phone, "4915112345678");
        let err = Call::parse("pair_code", json!({"account": "s", "phone": "abc"})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);

        let err = Call::parse("frobnicate", Value::Null).unwrap_err();
        assert_eq!(err.code, code::METHOD_NOT_FOUND);
        assert!(err.message.contains("status, health"), "{}", err.message);
    }
}
