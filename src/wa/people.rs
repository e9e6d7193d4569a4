//! Who is who, asked of WhatsApp: which numbers are on it and under which
//! LID (usync), and what the library's own LID-PN store knows.

use whatsapp_rust::Jid;

use super::session::{Session, SessionError};

/// The server's answer about one phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCheck {
    /// Digits.
    pub phone: String,
    pub on_whatsapp: bool,
    /// The LID user (digits), when the server gave one.
    pub lid: Option<String>,
}

impl Session {
    /// Asks the server (usync) which of `phones` (digits) are on WhatsApp
    /// and their LIDs. The library keeps the mappings it learns as well.
    pub async fn check_numbers(&self, phones: &[String]) -> Result<Vec<NumberCheck>, SessionError> {
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let jids: Vec<Jid> = phones.iter().map(Jid::pn).collect();
        let answers = self
            .client
            .contacts()
            .is_on_whatsapp(&jids)
            .await
            .map_err(|e| {
                SessionError::Query(format!("asking which numbers are on WhatsApp: {e}"))
            })?;
        Ok(phones
            .iter()
            .map(|phone| {
                let answer = answers.iter().find(|a| {
                    (a.jid.is_pn() && a.jid.user == *phone)
                        || a.pn_jid.as_ref().is_some_and(|pn| pn.user == *phone)
                });
                NumberCheck {
                    phone: phone.clone(),
                    on_whatsapp: answer.is_some_and(|a| a.is_registered),
                    lid: answer.and_then(|a| {
                        a.lid
                            .as_ref()
                            .or(a.jid.is_lid().then_some(&a.jid))
                            .map(|l| l.user.to_string())
                    }),
                }
            })
            .collect())
    }

    /// The (LID, phone) users the library's LID-PN store holds for `jid`,
    /// a LID or phone-number JID.
    pub async fn lid_pn(&self, jid: &str) -> Option<(String, String)> {
        let jid: Jid = jid.parse().ok()?;
        let entry = self.client.get_lid_pn_entry(&jid).await.ok().flatten()?;
        Some((entry.lid.to_string(), entry.phone_number.to_string()))
    }
}

/// A group the account is in, as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub jid: String,
    pub subject: String,
    pub participants: Vec<Participant>,
}

/// A member of a group: the addresses the server gave for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The member's address in the group (a LID in LID-addressed groups).
    pub jid: String,
    /// The phone-number JID beside it, when the server (or the library's
    /// LID-PN store) has it.
    pub phone: Option<String>,
    pub admin: bool,
}

impl Session {
    /// The groups the account is in, with their members.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, SessionError> {
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let groups = self
            .client
            .groups()
            .get_participating()
            .await
            .map_err(|e| SessionError::Query(format!("listing the account's groups: {e}")))?;
        let mut groups: Vec<GroupInfo> = groups
            .into_values()
            .map(|g| GroupInfo {
                jid: g.id.to_string(),
                subject: g.subject,
                participants: g
                    .participants
                    .into_iter()
                    .map(|p| Participant {
                        admin: p.is_admin(),
                        phone: p
                            .phone_number
                            .or_else(|| p.jid.is_pn().then(|| p.jid.clone()))
                            .map(|j| j.to_string()),
                        jid: p.lid.unwrap_or(p.jid).to_string(),
                    })
                    .collect(),
            })
            .collect();
        groups.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(groups)
    }
}
