//! People and conversations: every message, received or sent, filed under
//! one conversation per person (or group) whichever address it used, the
//! contacts map that makes that possible, and messages and chats as users
//! see them. Pure logic over `store/`, driven by `account/`.

pub mod address;
pub mod media;
pub mod outgoing_file;

use crate::store::{
    Address, Annotations, ChatSummary, Contact, DeliveryStatus, Draft, Enqueued, InboxRecord,
    MediaMeta, MessageStore, Sighting, StoreError, ToFile,
};
use crate::wa::{GroupInfo, IncomingMessage, NumberCheck, Participant};
pub use address::{Directory, Shown};

/// A message as walink shows it, received or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// Position in the account's history; the pagination cursor.
    pub cursor: u64,
    pub id: String,
    /// The conversation, as shown (`+15551234567`, a LID JID, a group JID).
    pub chat: String,
    /// The sender's address as the message named it.
    pub sender: String,
    pub sender_phone: Option<String>,
    pub sender_lid: Option<String>,
    pub sender_name: Option<String>,
    pub from_me: bool,
    /// Unix seconds, the sender's clock.
    pub timestamp: i64,
    /// Unix milliseconds, when walink stored it.
    pub received_at: u64,
    /// `text`, `image`, `voice`, …
    pub kind: String,
    /// The body or caption.
    pub text: Option<String>,
    /// For a message walink sent: where it is.
    pub status: Option<DeliveryStatus>,
    /// What a media message says of its file.
    pub media: Option<MediaMeta>,
    /// The id of the message this one answers.
    pub reply_to: Option<String>,
    pub edited: bool,
    /// Deleted for everyone (its text is gone).
    pub revoked: bool,
    pub reactions: Vec<ReactionView>,
}

/// A reaction, by a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionView {
    pub emoji: String,
    pub by: Shown,
}

/// One conversation as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatView {
    pub chat: String,
    pub phone: Option<String>,
    pub lid: Option<String>,
    pub name: Option<String>,
    pub group: bool,
    /// Unix seconds of the newest message.
    pub last_at: i64,
    pub messages: u64,
}

/// What filing a received message needs to know: its conversation and the
/// people it names, with both their addresses when the message gave both.
pub fn to_file(m: &IncomingMessage) -> ToFile {
    let message = &m.message;
    let mut people = Vec::new();
    let name = (!message.from_me)
        .then_some(m.push_name.as_deref())
        .flatten();
    people.extend(address::sighting(
        &message.sender,
        m.sender_alt.as_deref(),
        name,
    ));
    if !m.is_group && message.chat != message.sender {
        people.extend(address::sighting(
            &message.chat,
            m.chat_alt.as_deref(),
            None,
        ));
    }
    ToFile {
        message: message.clone(),
        chat: address::parse(&message.chat),
        people,
        reply_to: m.reply_to.clone(),
        change: m.change.clone(),
        media: m.media.clone(),
        fetch: m.fetch.clone(),
    }
}

/// Files received messages and returns the new ones as shown.
pub async fn file(
    store: &MessageStore,
    batch: &[IncomingMessage],
    now_ms: u64,
) -> Result<Vec<MessageView>, StoreError> {
    let stored = store
        .file_inbound(batch.iter().map(to_file).collect(), now_ms)
        .await?;
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    views(store, stored).await
}

/// A message the library delivered without storing it (a newsletter, a
/// recovered placeholder), shown with what the message itself says.
pub fn unstored(m: &IncomingMessage) -> MessageView {
    let filing = to_file(m);
    let contacts = filing
        .people
        .into_iter()
        .map(|s| Contact {
            lid: s.lid,
            phone: s.phone,
            name: s.name,
            updated_at: 0,
        })
        .collect();
    let record = InboxRecord {
        seq: 0,
        received_at: 0,
        message: m.message.clone(),
    };
    view(
        &Directory::new(contacts, Default::default()),
        record,
        None,
        Annotations {
            reply_to: m.reply_to.clone(),
            media: m.media.clone(),
            ..Annotations::default()
        },
    )
}

/// Queues `draft` for `draft.to` (any address of the person, or a group)
/// and files it in that conversation; `own` is the account's JID.
pub async fn send(
    store: &MessageStore,
    draft: Draft,
    own: Option<&str>,
    now_ms: u64,
) -> Result<Enqueued, StoreError> {
    let own = own.map(|j| address::parse(j).jid()).unwrap_or_default();
    let chat = address::parse(&draft.to);
    store.send_filed(draft, chat, &own, now_ms).await
}

/// The conversation key `chat` (any address of a person, or a group) is
/// filed under, for looking its messages up.
pub async fn chat_key(store: &MessageStore, chat: &str) -> Result<String, StoreError> {
    store.chat_key(address::parse(chat)).await
}

/// Records a mapping the library learned (a LID and a phone user) and
/// merges the person's conversations.
pub async fn learn(
    store: &MessageStore,
    lid: String,
    phone: String,
    now_ms: u64,
) -> Result<(), StoreError> {
    store
        .learn(
            vec![Sighting {
                lid: Some(lid),
                phone: Some(phone),
                name: None,
            }],
            now_ms,
        )
        .await
}

/// Records what usync answered (numbers on WhatsApp with their LIDs).
pub async fn learn_checks(
    store: &MessageStore,
    checks: &[NumberCheck],
    now_ms: u64,
) -> Result<(), StoreError> {
    let people = checks
        .iter()
        .filter(|c| c.on_whatsapp)
        .map(|c| Sighting {
            lid: c.lid.clone(),
            phone: Some(c.phone.clone()),
            name: None,
        })
        .collect();
    store.learn(people, now_ms).await
}

/// Stored messages as shown, with the status of those walink sent.
pub async fn views(
    store: &MessageStore,
    records: Vec<InboxRecord>,
) -> Result<Vec<MessageView>, StoreError> {
    let directory = directory(store).await?;
    let sent: Vec<String> = records
        .iter()
        .filter(|r| r.message.from_me)
        .map(|r| r.message.id.clone())
        .collect();
    let statuses = if sent.is_empty() {
        Default::default()
    } else {
        store.statuses(sent).await?
    };
    let mut notes = store
        .annotations(records.iter().map(|r| r.seq).collect())
        .await?;
    Ok(records
        .into_iter()
        .map(|r| {
            let status = statuses.get(&r.message.id).copied();
            let notes = notes.remove(&r.seq).unwrap_or_default();
            view(&directory, r, status, notes)
        })
        .collect())
}

async fn directory(store: &MessageStore) -> Result<Directory, StoreError> {
    Ok(Directory::new(
        store.contacts().await?,
        store.group_subjects().await?,
    ))
}

fn view(
    directory: &Directory,
    r: InboxRecord,
    status: Option<DeliveryStatus>,
    notes: Annotations,
) -> MessageView {
    let m = r.message;
    let sender = directory.show(&m.sender);
    MessageView {
        media: notes.media,
        reply_to: notes.reply_to,
        edited: notes.edited,
        revoked: notes.revoked,
        reactions: notes
            .reactions
            .into_iter()
            .map(|r| ReactionView {
                by: directory.show(&r.reactor),
                emoji: r.emoji,
            })
            .collect(),
        cursor: r.seq,
        chat: directory.show(&m.chat).shown,
        sender_phone: sender.phone,
        sender_lid: sender.lid,
        sender_name: sender.name,
        kind: m.description.clone().unwrap_or_else(|| "text".into()),
        id: m.id,
        sender: m.sender,
        from_me: m.from_me,
        timestamp: m.timestamp,
        received_at: r.received_at,
        text: notes.current_text.unwrap_or(m.text),
        status,
    }
}

/// Chats as shown, most recently active first.
pub async fn chats(store: &MessageStore) -> Result<Vec<ChatView>, StoreError> {
    let directory = directory(store).await?;
    Ok(store
        .chats()
        .await?
        .into_iter()
        .map(|c: ChatSummary| {
            let shown = directory.show(&c.chat);
            ChatView {
                chat: shown.shown,
                phone: shown.phone,
                lid: shown.lid,
                name: shown.name,
                group: shown.group,
                last_at: c.last_timestamp,
                messages: c.count,
            }
        })
        .collect())
}

/// Every contact as shown.
pub async fn contacts(store: &MessageStore) -> Result<Vec<Shown>, StoreError> {
    Ok(store
        .contacts()
        .await?
        .into_iter()
        .map(|c| Shown {
            shown: match (&c.phone, &c.lid) {
                (Some(p), _) => address::plus(p),
                (None, Some(l)) => Address::Lid(l.clone()).jid(),
                (None, None) => String::new(),
            },
            phone: c.phone.map(|p| address::plus(&p)),
            lid: c.lid.map(|l| Address::Lid(l).jid()),
            name: c.name,
            group: false,
        })
        .collect())
}

/// A group as shown, its members as people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub jid: String,
    pub subject: String,
    pub participants: Vec<MemberView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub person: Shown,
    pub admin: bool,
}

/// Keeps what the server listed (subjects, and each member's LID and
/// number, which joins their conversations) and shows it.
pub async fn groups(
    store: &MessageStore,
    groups: Vec<GroupInfo>,
    now_ms: u64,
) -> Result<Vec<GroupView>, StoreError> {
    let people: Vec<Sighting> = groups
        .iter()
        .flat_map(|g| &g.participants)
        .filter_map(|p| address::sighting(&p.jid, p.phone.as_deref(), None))
        .collect();
    store.learn(people, now_ms).await?;
    store
        .save_groups(
            groups
                .iter()
                .map(|g| (g.jid.clone(), g.subject.clone()))
                .collect(),
            now_ms,
        )
        .await?;
    let directory = directory(store).await?;
    Ok(groups
        .into_iter()
        .map(|g| GroupView {
            participants: g
                .participants
                .iter()
                .map(|p: &Participant| MemberView {
                    person: directory.show(&p.jid),
                    admin: p.admin,
                })
                .collect(),
            jid: g.jid,
            subject: g.subject,
        })
        .collect())
}
