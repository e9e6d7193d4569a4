//! LID or phone-number addressing: which form of a user's address a stanza
//! names, and the other form the real server puts alongside so clients learn
//! the LID ↔ phone mapping.

use serde::{Deserialize, Serialize};
use wacore_binary::Jid;
use wacore_binary::builder::NodeBuilder;

use super::directory::ServerView;

/// The push name contact `phone` set for itself; the server sends it as
/// `notify` on the contact's messages.
pub fn push_name(phone: &str) -> String {
    format!("Contact {phone}")
}

/// How a one-to-one message names its sender: by LID (what the real server
/// does since 2025, the default) or by phone number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    #[default]
    Lid,
    Pn,
    /// By LID with no phone number beside it: what a client sees of a
    /// contact whose number it was never given (a hidden number, a
    /// mapping that arrives only later through usync).
    #[serde(rename = "lid_only")]
    LidOnly,
}

impl Addressing {
    /// The form `jid` is in.
    pub fn of(jid: &Jid) -> Self {
        if jid.is_lid() { Self::Lid } else { Self::Pn }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "lid" => Some(Self::Lid),
            "pn" => Some(Self::Pn),
            "lid_only" => Some(Self::LidOnly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lid => "lid",
            Self::Pn => "pn",
            Self::LidOnly => "lid_only",
        }
    }

    /// Device `device` of phone number `phone` in this form.
    pub fn jid(self, view: &dyn ServerView, phone: &str, device: u16) -> Jid {
        match self {
            Self::Lid | Self::LidOnly => Jid::lid_device(view.lid_of(phone), device),
            Self::Pn => Jid::pn_device(phone, device),
        }
    }

    /// `builder` with `from` naming device `device` of `phone` in this form
    /// and the other form beside it: `sender_pn` (and `addressing_mode`) on
    /// a LID-addressed stanza, `sender_lid` on a phone-addressed one.
    pub fn sender_attrs(
        self,
        builder: NodeBuilder,
        view: &dyn ServerView,
        phone: &str,
        device: u16,
    ) -> NodeBuilder {
        let from = builder.attr("from", self.jid(view, phone, device));
        match self {
            Self::Lid => from
                .attr("sender_pn", Jid::pn(phone))
                .attr("addressing_mode", "lid"),
            Self::Pn => from.attr("sender_lid", Jid::lid(view.lid_of(phone))),
            Self::LidOnly => from.attr("addressing_mode", "lid"),
        }
    }
}
