//! `mock-wa --listen 127.0.0.1:0 --admin 127.0.0.1:0`: prints one JSON line
//! with the URLs and the root key, then serves until killed.

use anyhow::Context as _;
use clap::Parser;
use mock_wa::{MockConfig, MockServer};
use std::io::Write as _;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "WhatsApp Web protocol mock server for tests and benchmarks")]
struct Args {
    /// WebSocket listen address (the client connects to ws://ADDR/ws/chat).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Admin HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: String,
    /// Media host listen address (plain HTTP uploads and downloads).
    #[arg(long, default_value = "127.0.0.1:0")]
    media: String,
    /// Number of pair-device refs a new device gets.
    #[arg(long, default_value_t = 6)]
    qr_refs: usize,
    /// Seconds the first pair-device ref stays valid.
    #[arg(long, default_value_t = 60)]
    qr_first_ttl_secs: u64,
    /// Seconds each later pair-device ref stays valid.
    #[arg(long, default_value_t = 20)]
    qr_ttl_secs: u64,
    /// Refuse Noise IK from known devices so they log in via XXfallback.
    #[arg(long)]
    no_ik: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "mock_wa=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = MockConfig {
        listen: args.listen,
        admin_listen: args.admin,
        media_listen: args.media,
        qr_refs: args.qr_refs,
        qr_first_ttl: Duration::from_secs(args.qr_first_ttl_secs),
        qr_ttl: Duration::from_secs(args.qr_ttl_secs),
        accept_ik: !args.no_ik,
        ..MockConfig::default()
    };
    let mock = MockServer::start(config)
        .await
        .context("starting mock-wa failed; check that the listen addresses are free")?;
    let line = serde_json::json!({
        "ws": mock.ws_url(),
        "admin": mock.admin_url(),
        "media": mock.media_host(),
        "root_key": mock.root_public_key_b64(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing the address line to stdout failed")?;
    out.flush().context("flushing stdout failed")?;
    drop(out);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C failed")?;
    Ok(())
}
