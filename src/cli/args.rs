//! Command-line syntax.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "walink",
    version,
    about = "Control walinkd, the daemon that keeps WhatsApp accounts linked",
    after_help = "Exit status: 0 success; 1 degraded / 2 critical (health only); \
                  3 walinkd refused the request; 4 cannot reach walinkd; 64 bad arguments."
)]
pub struct Cli {
    /// walinkd's socket [default: /run/walink/walink.sock, or
    /// $XDG_RUNTIME_DIR/walink/walink.sock when only that one exists]
    #[arg(long, global = true, env = "WALINK_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print the protocol's JSON instead of tables (JSON lines for streams)
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// State, health, uptime and reconnects of every account, or of one
    Status {
        /// Account name (all accounts when left out)
        account: Option<String>,
        /// Keep refreshing (q or Ctrl-C quits); when stdout is not a
        /// terminal, print a line per account each time it changes
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes with --watch (events refresh at once)
        #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
    },
    /// Health of every account, or of one; exit 0 healthy, 1 degraded, 2 critical
    Health {
        /// Account name (all accounts when left out)
        account: Option<String>,
    },
    /// Show the pairing QR code, refreshed as it rotates; exit 0 once linked
    Qr {
        /// Account name from walink.toml
        account: String,
        /// Print each QR payload on its own line instead of drawing it
        #[arg(long)]
        raw: bool,
        /// Give up after this many seconds without a link (exit 3 with the
        /// account's state and reason); default: wait until linked
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Get a code to link the account by typing it on the phone
    PairCode {
        /// Account name from walink.toml
        account: String,
        /// Phone number of the WhatsApp account, international format (+15551234567)
        phone: String,
        /// Give up after this many seconds without a code (exit 3 with the
        /// account's state and reason); default: wait until there is one
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Start the account; without a session it waits for pairing
    Initialize {
        /// Account name from walink.toml
        account: String,
    },
    /// Drop the connection and connect again now
    Reconnect {
        /// Account name from walink.toml
        account: String,
    },
    /// Log the account out and delete its session (pairing needed again);
    /// the newest backup is kept unless --purge
    ClearSession {
        /// Account name from walink.toml
        account: String,
        /// Also delete every backup of the account
        #[arg(long)]
        purge: bool,
    },
    /// Take a backup of the account's session now
    Backup {
        /// Account name from walink.toml
        account: String,
    },
    /// List the account's backup generations, newest first
    Backups {
        /// Account name from walink.toml
        account: String,
    },
    /// Replace the account's session with a backup and reconnect
    Restore {
        /// Account name from walink.toml
        account: String,
        /// Generation id from `walink backups` [default: newest usable]
        #[arg(long, value_name = "ID")]
        snapshot: Option<u64>,
    },
    /// Write the account's session to FILE, encrypted, to move it to another host
    Export {
        /// Account name from walink.toml
        account: String,
        /// File to create (never overwritten)
        file: std::path::PathBuf,
        /// Encrypt with the 32-byte key in this file instead of a passphrase
        #[arg(long, value_name = "PATH", conflicts_with = "passphrase_file")]
        key_file: Option<std::path::PathBuf>,
        /// Read the passphrase from this file [default: $WALINK_PASSPHRASE, or ask]
        #[arg(long, value_name = "PATH")]
        passphrase_file: Option<std::path::PathBuf>,
    },
    /// Replace the account's session with one from `walink export` and connect
    Import {
        /// Account name from walink.toml
        account: String,
        /// File written by `walink export`
        file: std::path::PathBuf,
        /// Decrypt with the 32-byte key in this file
        #[arg(long, value_name = "PATH", conflicts_with = "passphrase_file")]
        key_file: Option<std::path::PathBuf>,
        /// Read the passphrase from this file [default: $WALINK_PASSPHRASE, or ask]
        #[arg(long, value_name = "PATH")]
        passphrase_file: Option<std::path::PathBuf>,
    },
    /// Stop and start the account's supervisor
    Restart {
        /// Account name from walink.toml
        account: String,
    },
    /// Send a text message or a file; prints its message id once the
    /// server has it (with --no-wait, once it is queued durably)
    Send {
        /// Account name from walink.toml
        account: String,
        /// Phone number (+15551234567) or JID (…@s.whatsapp.net, …@lid,
        /// …@g.us); any address of a person reaches the same conversation
        to: String,
        /// Message text (quote it); with --file, use --caption
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// Send this file: an image, video or audio message when it is one
        /// WhatsApp plays (JPEG, PNG, WebP; MP4, 3GP, QuickTime; MP3, M4A,
        /// AAC, Ogg/Opus, AMR), else a document showing its name. walink
        /// reads it and hands it to walinkd, which keeps a copy until the
        /// server has the message
        #[arg(long, value_name = "PATH")]
        file: Option<std::path::PathBuf>,
        /// The file's caption (not for audio)
        #[arg(long, value_name = "TEXT", requires = "file")]
        caption: Option<String>,
        /// `document`: send the file as a document whatever it is (its name
        /// shown, no preview)
        #[arg(long = "as", value_name = "KIND", requires = "file")]
        send_as: Option<SendAs>,
        /// Idempotency key: resending with the same key never sends twice
        #[arg(long, value_name = "KEY")]
        id: Option<String>,
        /// Return as soon as the message is queued; it goes out when the
        /// account is connected (`walink outbox ACCOUNT` shows it)
        #[arg(long)]
        no_wait: bool,
        /// Answer this message (its id, as `walink messages` shows it): it
        /// is quoted
        #[arg(long, value_name = "MESSAGE_ID")]
        reply_to: Option<String>,
    },
    /// React to a message with an emoji ("" takes the reaction back); it
    /// goes to the message's conversation
    React {
        /// Account name from walink.toml
        account: String,
        /// The message's id, as `walink messages` shows it
        message_id: String,
        /// The emoji (quote it); "" removes the reaction
        emoji: String,
        /// Return as soon as the reaction is queued
        #[arg(long)]
        no_wait: bool,
    },
    /// Download, decrypt and check a received photo, video, voice note or
    /// document; walinkd writes the file (mode 0640) and this prints where
    Media {
        /// Account name from walink.toml
        account: String,
        /// The message's id, as `walink messages` shows it
        message_id: String,
        /// Write this file (or into this directory); by default
        /// MESSAGE_ID.EXT in the current directory. walinkd must be able to
        /// write there
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Change the text of a message this account sent, for everyone; it
    /// shows as edited
    Edit {
        /// Account name from walink.toml
        account: String,
        /// The message's id, as `walink messages` shows it
        message_id: String,
        /// The new text (quote it)
        text: String,
        /// Return as soon as the edit is queued
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete a message this account sent, for everyone
    Delete {
        /// Account name from walink.toml
        account: String,
        /// The message's id, as `walink messages` shows it
        message_id: String,
        /// Return as soon as the deletion is queued
        #[arg(long)]
        no_wait: bool,
    },
    /// Messages waiting to be sent, and those that failed
    Outbox {
        /// Account name from walink.toml
        account: String,
        /// Every stored sent message, newest first, with its delivery status
        #[arg(long)]
        all: bool,
    },
    /// Received and sent messages, newest first
    Messages {
        /// Account name from walink.toml
        account: String,
        /// Only this conversation: a phone number (+15551234567), a phone
        /// or LID JID of the person, or a group JID
        #[arg(long, value_name = "CHAT")]
        chat: Option<String>,
        /// Messages per page (1 to 1000)
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
        /// Older than this cursor (printed at the end of the previous page)
        #[arg(long, value_name = "CURSOR")]
        before: Option<u64>,
        /// Only messages whose text holds every word of TEXT
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
    },
    /// Conversations, one per person or group: last message time and count
    Chats {
        /// Account name from walink.toml
        account: String,
    },
    /// The groups the account is in: subject and members (asks the server)
    Groups {
        /// Account name from walink.toml
        account: String,
    },
    /// People walink knows (phone number, LID, push name), or with --check
    /// which numbers are on WhatsApp and their LIDs (asks the server)
    Contacts {
        /// Account name from walink.toml
        account: String,
        /// Phone numbers to ask the server about (the account must be connected)
        #[arg(long, value_name = "PHONE", num_args = 1..)]
        check: Vec<String>,
    },
    /// Print account events as they happen, one per line, until interrupted
    Events {
        /// Account name (all accounts when left out)
        account: Option<String>,
    },
    /// Check the network path to WhatsApp step by step (DNS, TCP per IP
    /// family, proxy, TLS, WebSocket, Noise hello); exit 1 when a step fails
    Diagnose {
        /// Use this account's settings (its proxy); the daemon's when left out
        account: Option<String>,
    },
    /// Print the shell completion script for SHELL (needs no daemon)
    Completions {
        /// Shell to complete for
        shell: clap_complete::Shell,
    },
}

/// What `send --as` forces a file to go out as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendAs {
    Document,
}
