//! The only place that touches whatsapp-rust: transport, client wiring and
//! the translation of library events into walink events.

pub mod diagnose;
pub mod events;
pub mod http;
pub mod inbox;
pub mod media;
pub mod message_id;
pub mod outgoing;
pub mod people;
pub mod resend;
pub mod session;
pub mod transport;
pub mod version;

pub use diagnose::{DiagnoseReport, DiagnoseStep, StepStatus, diagnose};
pub use events::{IncomingMessage, ReceiptStatus, WaEvent};
pub use inbox::InboxSink;
pub use media::{Fetched, MediaError};
pub use message_id::{message_id_for_key, new_message_id};
pub use outgoing::outgoing_message;
pub use people::{GroupInfo, NumberCheck, Participant};
pub use resend::OutboxResends;
pub use session::{ConnectionSettings, Session, SessionError};
pub use version::{VersionSource, VersionStatus};
