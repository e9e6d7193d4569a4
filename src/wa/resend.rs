//! Retry receipts answered from walink's outbox: when a contact could not
//! decrypt a message and the library no longer holds its copy, the text the
//! outbox committed before the send is encoded again, exactly as it was
//! first sent, so the library can re-encrypt it under the same id.

use crate::store::{MessageStore, ResendSource, Sendable};

use super::outgoing::outgoing_message;

pub struct OutboxResends {
    store: MessageStore,
}

impl OutboxResends {
    pub fn new(store: MessageStore) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl ResendSource for OutboxResends {
    async fn payload(&self, _chat_jid: &str, message_id: &str) -> Option<Vec<u8>> {
        // Ids are unique per account; the chat may be either of the
        // person's addresses (phone number or LID), so it is not compared.
        match self.store.sendable(message_id).await {
            // A file never uploaded was never sent: nothing to answer.
            Ok(Some(Sendable {
                media: Some(media), ..
            })) if media.upload.is_none() => None,
            Ok(Some(Sendable {
                record,
                context,
                media,
            })) => {
                tracing::info!(id = %message_id, "answering a retry receipt from the outbox");
                let file = media
                    .as_ref()
                    .and_then(|m| m.upload.as_ref().map(|u| (m, u)));
                let message = outgoing_message(&record.to, &record.text, context.as_ref(), file);
                Some(whatsapp_rust::waproto::codec::message_to_vec(&message))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(id = %message_id, error = %e, "reading the outbox for a retry receipt failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::{MessageDb, messages_db_path};

    #[tokio::test]
    async fn a_retry_gets_the_outbox_text_encoded_as_it_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let db = MessageDb::open(&messages_db_path(dir.path()), None).unwrap();
        let store = db.account("sales").unwrap();
        store
            .enqueue(
                "3EB0AA",
                "15551234567@s.whatsapp.net",
                "hello again",
                None,
                1,
            )
            .await
            .unwrap();
        let resends = OutboxResends::new(store);
        let payload = resends
            .payload("100015551234567@lid", "3EB0AA")
            .await
            .expect("the outbox has it");
        let message = whatsapp_rust::waproto::codec::message_decode(&payload).unwrap();
        assert_eq!(message.conversation.as_deref(), Some("hello again"));
        assert_eq!(
            message,
            outgoing_message("15551234567@s.whatsapp.net", "hello again", None, None)
        );
        assert!(
            resends
                .payload("15551234567@s.whatsapp.net", "3EB0BB")
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_file_is_resent_as_its_upload_named_it_and_never_before_the_upload() {
        use crate::store::{Address, Draft, MediaDraft, MediaKind, OutgoingMedia, Uploaded};
        let dir = tempfile::tempdir().unwrap();
        let db = MessageDb::open(&messages_db_path(dir.path()), None).unwrap();
        let store = db.account("sales").unwrap();
        let media = OutgoingMedia {
            kind: MediaKind::Document,
            mimetype: "application/pdf".into(),
            filename: Some("q3.pdf".into()),
            size: 5,
            sha256: "cd".repeat(32),
            media_key: [9; 32],
            upload: None,
        };
        let draft = Draft {
            id: "3EB0CC".into(),
            to: "15551234567@s.whatsapp.net".into(),
            text: "the report".into(),
            media: Some(MediaDraft {
                media: media.clone(),
                data: b"%PDF-".to_vec(),
            }),
            ..Draft::default()
        };
        store
            .send_filed(
                draft,
                Address::Phone("15551234567".into()),
                "1@s.whatsapp.net",
                1,
            )
            .await
            .unwrap();
        let resends = OutboxResends::new(store.clone());
        assert!(
            resends.payload("x", "3EB0CC").await.is_none(),
            "never uploaded, never sent"
        );
        let uploaded = Uploaded {
            url: "https://mmg/d.enc".into(),
            direct_path: "/v/t62.7119-24/d.enc".into(),
            file_sha256: [3; 32],
            file_enc_sha256: [4; 32],
            file_length: 5,
            media_key_timestamp: 1_700_000_000,
        };
        store
            .record_upload("3EB0CC", uploaded.clone())
            .await
            .unwrap();
        let payload = resends.payload("x", "3EB0CC").await.expect("uploaded");
        let message = whatsapp_rust::waproto::codec::message_decode(&payload).unwrap();
        let doc = message.document_message.as_option().expect("a document");
        assert_eq!(doc.media_key.as_deref(), Some(&[9u8; 32][..]));
        assert_eq!(doc.direct_path.as_deref(), Some("/v/t62.7119-24/d.enc"));
        assert_eq!(doc.file_name.as_deref(), Some("q3.pdf"));
        assert_eq!(doc.caption.as_deref(), Some("the report"));
        assert_eq!(
            message,
            outgoing_message(
                "15551234567@s.whatsapp.net",
                "the report",
                None,
                Some((&media, &uploaded))
            )
        );
    }
}
