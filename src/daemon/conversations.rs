//! The daemon's answers about people and conversations: `messages`,
//! `chats`, `contacts`, `groups` and `media`, through the message layer.

use super::errors::command_error;
use super::fetches::Fetches;
use super::wire::wire_status;
use crate::account::AccountHandle;
use crate::account::now_ms;
use crate::ipc::protocol::{self as wire, Reply, RpcError, to_result};
use crate::messages::media::{Destination, FetchError};
use crate::messages::{self, ChatView, MessageView};

pub(super) async fn messages(
    handle: &AccountHandle,
    p: wire::MessagesParams,
) -> Result<Reply, RpcError> {
    let store = handle.messages();
    let chat = match &p.chat {
        Some(chat) => Some(
            messages::chat_key(store, chat)
                .await
                .map_err(RpcError::storage)?,
        ),
        None => None,
    };
    let page = store
        .messages(
            chat.as_deref(),
            p.search.as_deref(),
            p.before,
            p.limit.unwrap_or(wire::DEFAULT_PAGE),
        )
        .await
        .map_err(RpcError::storage)?;
    let messages = messages::views(store, page.messages)
        .await
        .map_err(RpcError::storage)?
        .into_iter()
        .map(wire_message)
        .collect();
    to_result(&wire::MessagesResult {
        messages,
        next_cursor: page.next_cursor,
    })
}

pub(super) async fn chats(handle: &AccountHandle) -> Result<Reply, RpcError> {
    let chats = messages::chats(handle.messages())
        .await
        .map_err(RpcError::storage)?
        .into_iter()
        .map(wire_chat)
        .collect();
    to_result(&wire::ChatsResult { chats })
}

pub(super) async fn contacts(
    handle: &AccountHandle,
    p: wire::ContactsParams,
) -> Result<Reply, RpcError> {
    let store = handle.messages();
    let Some(phones) = p.check else {
        let contacts = messages::contacts(store)
            .await
            .map_err(RpcError::storage)?
            .into_iter()
            .map(|c| wire::ContactInfo {
                phone: c.phone,
                lid: c.lid,
                name: c.name,
                on_whatsapp: None,
            })
            .collect();
        return to_result(&wire::ContactsResult { contacts });
    };
    let session = handle
        .live_session()
        .await
        .map_err(|e| command_error(&p.account, e))?;
    let checks = session.check_numbers(&phones).await.map_err(|e| {
        RpcError::timeout(format!(
            "checking {} numbers for account {}: {e}; try again once it is connected",
            phones.len(),
            p.account
        ))
    })?;
    messages::learn_checks(store, &checks, now_ms())
        .await
        .map_err(RpcError::storage)?;
    let contacts = checks
        .into_iter()
        .map(|c| wire::ContactInfo {
            phone: Some(messages::address::plus(&c.phone)),
            lid: c.lid.map(|l| crate::store::Address::Lid(l).jid()),
            name: None,
            on_whatsapp: Some(c.on_whatsapp),
        })
        .collect();
    to_result(&wire::ContactsResult { contacts })
}

pub(super) async fn groups(handle: &AccountHandle, account: &str) -> Result<Reply, RpcError> {
    let session = handle
        .live_session()
        .await
        .map_err(|e| command_error(account, e))?;
    let listed = session.groups().await.map_err(|e| {
        RpcError::timeout(format!(
            "listing the groups of account {account}: {e}; try again once it is connected"
        ))
    })?;
    let groups = messages::groups(handle.messages(), listed, now_ms())
        .await
        .map_err(RpcError::storage)?
        .into_iter()
        .map(|g| wire::GroupInfo {
            jid: g.jid,
            subject: g.subject,
            participants: g
                .participants
                .into_iter()
                .map(|m| wire::MemberInfo {
                    phone: m.person.phone,
                    lid: m.person.lid,
                    name: m.person.name,
                    admin: m.admin,
                })
                .collect(),
        })
        .collect();
    to_result(&wire::GroupsResult { groups })
}

/// The answer to a fetch of `id` that failed.
fn fetch_failed(account: &str, id: &str, e: FetchError) -> RpcError {
    match e {
        FetchError::UnknownMessage(id) => RpcError::invalid_params(format!(
            "account {account} has no message {id}; give an id `walink messages {account}` lists"
        )),
        FetchError::NoMedia { .. } => RpcError::invalid_message(e),
        FetchError::Store(e) => RpcError::storage(e),
        e @ (FetchError::Media(_) | FetchError::Write { .. }) => {
            tracing::warn!(account = %account, id = %id, error = %e, "fetching a received file failed");
            RpcError::media_failed(id, e)
        }
    }
}

/// Part `p.part` of a received file going to the client, which writes it;
/// part 0 fetches and checks it first.
pub(super) async fn media_part(
    handle: &AccountHandle,
    fetches: &Fetches,
    p: wire::MediaPartParams,
) -> Result<Reply, RpcError> {
    let key = (p.account.clone(), p.transfer.clone());
    if p.part == 0 {
        let failed = |e| fetch_failed(&p.account, &p.id, e);
        let found = messages::media::find(handle.messages(), &p.id)
            .await
            .map_err(failed)?;
        let session = handle
            .live_session()
            .await
            .map_err(|e| command_error(&p.account, e))?;
        let file = fetches.scratch()?;
        let held = file.try_clone().map_err(RpcError::internal)?;
        let checked = messages::media::fetch_into(&session, &found, file)
            .await
            .map_err(failed)?;
        tracing::info!(account = %p.account, id = %p.id, "fetched a received {} for a client", checked.kind);
        fetches.hold(key.clone(), &p.id, held, checked)?;
    }
    to_result(&fetches.part(&key, &p.id, p.part)?)
}

/// Fetches a received file where the client asked (walinkd writes it).
pub(super) async fn media(handle: &AccountHandle, p: wire::MediaParams) -> Result<Reply, RpcError> {
    let account = &p.account;
    let failed = |e| fetch_failed(account, &p.id, e);
    let found = messages::media::find(handle.messages(), &p.id)
        .await
        .map_err(failed)?;
    let session = handle
        .live_session()
        .await
        .map_err(|e| command_error(account, e))?;
    let to = match (&p.path, &p.dir) {
        (Some(path), _) => Destination::File(path.into()),
        (None, dir) => Destination::Dir(dir.clone().unwrap_or_default().into()),
    };
    let saved = messages::media::save(&session, &found, &to)
        .await
        .map_err(failed)?;
    tracing::info!(account = %account, id = %p.id, path = %saved.path.display(), "saved a received {}", saved.kind);
    to_result(&wire::MediaResult {
        account: account.clone(),
        id: p.id.clone(),
        path: saved.path.to_string_lossy().into_owned(),
        kind: saved.kind,
        size: saved.size,
        sha256: saved.sha256,
        mimetype: saved.mimetype,
        filename: saved.filename,
    })
}

pub(super) fn wire_message(m: MessageView) -> wire::StoredMessage {
    wire::StoredMessage {
        cursor: m.cursor,
        id: m.id,
        chat: m.chat,
        sender: m.sender,
        sender_phone: m.sender_phone,
        sender_lid: m.sender_lid,
        sender_name: m.sender_name,
        from_me: m.from_me,
        timestamp: m.timestamp.max(0) as u64,
        received_at: m.received_at / 1000,
        kind: m.kind,
        text: m.text,
        status: m.status.map(wire_status),
        media: m.media.map(|m| wire::MediaInfo {
            mimetype: m.mimetype,
            size: m.size,
            filename: m.filename,
            sha256: m.sha256,
            path: m.path,
        }),
        reply_to: m.reply_to,
        edited: m.edited,
        revoked: m.revoked,
        reactions: m
            .reactions
            .into_iter()
            .map(|r| wire::ReactionInfo {
                emoji: r.emoji,
                by: r.by.shown,
                by_phone: r.by.phone,
                by_lid: r.by.lid,
            })
            .collect(),
    }
}

fn wire_chat(c: ChatView) -> wire::ChatInfo {
    wire::ChatInfo {
        chat: c.chat,
        phone: c.phone,
        lid: c.lid,
        name: c.name,
        kind: if c.group {
            wire::ChatKind::Group
        } else {
            wire::ChatKind::Person
        },
        last_at: c.last_at.max(0) as u64,
        messages: c.messages,
    }
}
