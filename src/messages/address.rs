//! Addresses as WhatsApp writes them (`user[:device]@server`) reduced to
//! people, and people shown as users expect (`+15551234567`).

use std::collections::HashMap;

use crate::store::{Address, Contact, Sighting};

/// The person or group `jid` names; a device suffix is dropped.
pub fn parse(jid: &str) -> Address {
    let Some((user, server)) = jid.split_once('@') else {
        return Address::Other(jid.to_owned());
    };
    // `user.agent:device`: the agent and device name one person's devices.
    let user = user.split([':', '.']).next().unwrap_or(user);
    let digits = !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit());
    match server {
        "lid" if digits => Address::Lid(user.to_owned()),
        "s.whatsapp.net" | "c.us" if digits => Address::Phone(user.to_owned()),
        _ => Address::Other(jid.to_owned()),
    }
}

/// What seeing `jid` beside its alternate `alt` (and a push name) says
/// about one person; `None` for an address that is no person (a group).
pub fn sighting(jid: &str, alt: Option<&str>, name: Option<&str>) -> Option<Sighting> {
    let mut person = Sighting {
        name: name.map(str::to_owned),
        ..Sighting::default()
    };
    for address in std::iter::once(jid).chain(alt).map(parse) {
        match address {
            Address::Lid(lid) => person.lid = person.lid.or(Some(lid)),
            Address::Phone(phone) => person.phone = person.phone.or(Some(phone)),
            Address::Other(_) => {}
        }
    }
    (person.lid.is_some() || person.phone.is_some()).then_some(person)
}

/// A person's number as users write it.
pub fn plus(phone: &str) -> String {
    format!("+{phone}")
}

/// The contacts of an account, looked up by either address, and the
/// subjects of its groups.
#[derive(Debug, Default)]
pub struct Directory {
    contacts: Vec<Contact>,
    subjects: HashMap<String, String>,
}

/// One person or group as shown: the phone number when known, else the
/// LID JID, else the address as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    pub shown: String,
    pub phone: Option<String>,
    pub lid: Option<String>,
    pub name: Option<String>,
    pub group: bool,
}

impl Directory {
    pub fn new(contacts: Vec<Contact>, subjects: HashMap<String, String>) -> Self {
        Self { contacts, subjects }
    }

    fn find(&self, address: &Address) -> Option<&Contact> {
        self.contacts.iter().find(|c| match address {
            Address::Lid(lid) => c.lid.as_deref() == Some(lid),
            Address::Phone(phone) => c.phone.as_deref() == Some(phone),
            Address::Other(_) => false,
        })
    }

    /// `jid` (a conversation key or a sender) as shown.
    pub fn show(&self, jid: &str) -> Shown {
        let address = parse(jid);
        let contact = self.find(&address);
        let (mut phone, mut lid) = (None, None);
        match &address {
            Address::Lid(l) => lid = Some(l.clone()),
            Address::Phone(p) => phone = Some(p.clone()),
            Address::Other(_) => {}
        }
        if let Some(c) = contact {
            phone = phone.or(c.phone.clone());
            lid = lid.or(c.lid.clone());
        }
        let shown = match (&phone, &lid) {
            (Some(p), _) => plus(p),
            (None, Some(l)) => Address::Lid(l.clone()).jid(),
            (None, None) => jid.to_owned(),
        };
        Shown {
            group: jid.ends_with("@g.us"),
            name: contact
                .and_then(|c| c.name.clone())
                .or_else(|| self.subjects.get(jid).cloned()),
            shown,
            phone: phone.map(|p| plus(&p)),
            lid: lid.map(|l| Address::Lid(l).jid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_reduce_to_people() {
        assert_eq!(
            parse("15551234567:3@s.whatsapp.net"),
            Address::Phone("15551234567".into())
        );
        assert_eq!(
            parse("100015551234567:2@lid"),
            Address::Lid("100015551234567".into())
        );
        assert_eq!(
            parse("120363000000000001@g.us"),
            Address::Other("120363000000000001@g.us".into())
        );
        assert_eq!(
            parse("status@broadcast"),
            Address::Other("status@broadcast".into())
        );
        assert_eq!(parse("nonsense"), Address::Other("nonsense".into()));
    }

    #[test]
    fn a_sighting_joins_both_forms() {
        let s = sighting("1000555@lid", Some("555@s.whatsapp.net"), Some("Ann")).unwrap();
        assert_eq!(s.lid.as_deref(), Some("1000555"));
        assert_eq!(s.phone.as_deref(), Some("555"));
        assert_eq!(s.name.as_deref(), Some("Ann"));
        assert_eq!(sighting("1@g.us", None, None), None);
    }

    #[test]
    fn people_show_their_number_when_known() {
        let subjects = HashMap::from([("1-2@g.us".to_string(), "Team".to_string())]);
        let dir = Directory::new(
            vec![Contact {
                lid: Some("1000555".into()),
                phone: Some("555".into()),
                name: Some("Ann".into()),
                updated_at: 0,
            }],
            subjects,
        );
        let by_lid = dir.show("1000555@lid");
        assert_eq!(by_lid.shown, "+555");
        assert_eq!(by_lid.lid.as_deref(), Some("1000555@lid"));
        assert_eq!(by_lid.name.as_deref(), Some("Ann"));
        assert_eq!(dir.show("555@s.whatsapp.net"), by_lid);
        let stranger = dir.show("42@lid");
        assert_eq!((stranger.shown.as_str(), stranger.phone), ("42@lid", None));
        let group = dir.show("1-2@g.us");
        assert!(group.group);
        assert_eq!(
            (group.shown.as_str(), group.name.as_deref()),
            ("1-2@g.us", Some("Team"))
        );
    }
}
