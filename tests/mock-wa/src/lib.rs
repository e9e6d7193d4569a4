//! `mock-wa`: a WhatsApp Web protocol server for walink's tests and
//! benchmarks. See README.md for the protocol coverage and the admin API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mock = mock_wa::MockServer::start(mock_wa::MockConfig::default()).await?;
//! println!("point the client at {}", mock.ws_url());
//! # Ok(()) }
//! ```

pub mod admin;
pub mod cert;
pub mod config;
pub mod connection;
pub mod handlers;
pub mod http1;
pub mod iq;
pub mod media;
pub mod messaging;
pub mod nodefmt;
pub mod noise;
pub mod pair_code;
pub mod pairing;
pub mod server;
pub mod state;
pub mod stats;
pub mod wire;

pub use config::MockConfig;
pub use handlers::{AdminRequest, AdminResponse, BasicHandlers, Ctx, StanzaHandlers};
pub use pairing::PairError;
pub use server::{MockHandle, MockServer, StartError, WaitTimeout};
pub use state::{Device, DeviceInfo, Fault, ServerState, SessionHandle};
pub use stats::{Stats, StatsSnapshot};
