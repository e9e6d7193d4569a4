//! cli layer: `walink`, the command-line client of walinkd.
//!
//! Exit status: 0 success; 1 degraded and 2 critical (`walink health` only);
//! 3 walinkd refused the request (a JSON-RPC error: unknown account, …);
//! 4 walinkd cannot be reached or the connection failed; 64 bad arguments.

mod args;
mod qr;
mod render;
mod socket;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use args::{Cli, Command};
pub use socket::default_socket;

use crate::config::validate_account_name;
use crate::ipc::client::{Client, ClientError, StreamItem, decode};
use crate::ipc::protocol::{
    self, ActionResult, ChatsResult, HealthLevel, HealthResult, Lagged, MessagesResult,
    OutboxResult, PairCodeResult, QrNotification, QrResult, SendResult, StatusResult, method,
    notification,
};

/// Exit statuses.
pub mod exit {
    pub const OK: u8 = 0;
    pub const DEGRADED: u8 = 1;
    pub const CRITICAL: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
    pub const USAGE: u8 = 64;
}

/// What went wrong, already worded for the user.
#[derive(Debug)]
struct Failure {
    what: String,
    why: String,
    code: u8,
}

impl Failure {
    fn usage(what: &str, why: impl std::fmt::Display) -> Failure {
        Failure {
            what: what.to_owned(),
            why: why.to_string(),
            code: exit::USAGE,
        }
    }

    fn client(what: &str, e: ClientError) -> Failure {
        Failure {
            what: what.to_owned(),
            code: if e.is_connection_error() {
                exit::UNREACHABLE
            } else {
                exit::REFUSED
            },
            why: e.to_string(),
        }
    }
}

/// `walink`'s main: parses arguments, runs the command, returns the exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("walink: cannot start: {e}");
            return ExitCode::from(exit::UNREACHABLE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            let _ = std::io::stdout().flush();
            eprintln!("walink: {}: {}", f.what, f.why);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    check_arguments(&cli.command)?;
    let socket = cli.socket.clone().unwrap_or_else(default_socket);
    let mut client = Client::connect(&socket)
        .await
        .map_err(|e| Failure::client("cannot connect to walinkd", e))?;
    let out = Output { json: cli.json };
    match cli.command {
        Command::Status { account } => status(&mut client, &out, account).await,
        Command::Health { account } => health(&mut client, &out, account).await,
        Command::Qr { account, raw } => qr(&mut client, &out, &account, raw).await,
        Command::PairCode { account, phone } => {
            let result: PairCodeResult = call(
                &mut client,
                &out,
                method::PAIR_CODE,
                json!({"account": account, "phone": phone}),
                "pair-code",
            )
            .await?;
            if !out.json {
                println!("{}", result.code);
                println!(
                    "On the phone: WhatsApp → Linked devices → Link a device → Link with phone number instead, then type this code."
                );
            }
            Ok(exit::OK)
        }
        Command::Initialize { account } => {
            action(&mut client, &out, method::INITIALIZE, &account).await
        }
        Command::Reconnect { account } => {
            action(&mut client, &out, method::RECONNECT, &account).await
        }
        Command::ClearSession { account } => {
            action(&mut client, &out, method::CLEAR_SESSION, &account).await
        }
        Command::Restart { account } => action(&mut client, &out, method::RESTART, &account).await,
        Command::Send {
            account,
            to,
            text,
            id,
            no_wait,
        } => {
            let result: SendResult = call(
                &mut client,
                &out,
                method::SEND,
                json!({"account": account, "to": to, "text": text, "id": id, "wait": !no_wait}),
                "send",
            )
            .await?;
            if !out.json {
                println!("{}", result.id);
            }
            Ok(exit::OK)
        }
        Command::Outbox { account, all } => {
            let result: OutboxResult = call(
                &mut client,
                &out,
                method::OUTBOX,
                json!({"account": account, "all": all}),
                "outbox",
            )
            .await?;
            if !out.json {
                print!("{}", render::outbox_table(&result.messages, now()));
            }
            Ok(exit::OK)
        }
        Command::Messages {
            account,
            chat,
            limit,
            before,
        } => {
            let result: MessagesResult = call(
                &mut client,
                &out,
                method::MESSAGES,
                json!({"account": account, "chat": chat, "limit": limit, "before": before}),
                "messages",
            )
            .await?;
            if !out.json {
                print!("{}", render::messages_table(&result, &account));
            }
            Ok(exit::OK)
        }
        Command::Chats { account } => {
            let result: ChatsResult = call(
                &mut client,
                &out,
                method::CHATS,
                json!({ "account": account }),
                "chats",
            )
            .await?;
            if !out.json {
                print!("{}", render::chats_table(&result.chats));
            }
            Ok(exit::OK)
        }
        Command::Events { account } => events(&mut client, &out, account).await,
    }
}

/// Refuses what walinkd would refuse anyway, without a round trip, with the
/// same shared rules (account names, phone numbers, recipients).
fn check_arguments(command: &Command) -> Result<(), Failure> {
    let account = match command {
        Command::Status { account } | Command::Health { account } | Command::Events { account } => {
            account.as_deref()
        }
        Command::Qr { account, .. }
        | Command::PairCode { account, .. }
        | Command::Initialize { account }
        | Command::Reconnect { account }
        | Command::ClearSession { account }
        | Command::Restart { account }
        | Command::Send { account, .. }
        | Command::Outbox { account, .. }
        | Command::Messages { account, .. }
        | Command::Chats { account } => Some(account.as_str()),
    };
    if let Some(name) = account {
        validate_account_name(name)
            .map_err(|why| Failure::usage(&format!("invalid account name {name:?}"), why))?;
    }
    match command {
        Command::PairCode { phone, .. } => {
            protocol::normalize_phone(phone)
                .map_err(|why| Failure::usage(&format!("invalid phone number {phone:?}"), why))?;
        }
        Command::Send { to, text, .. } => {
            protocol::recipient_jid(to)
                .map_err(|why| Failure::usage(&format!("invalid recipient {to:?}"), why))?;
            if text.trim().is_empty() {
                return Err(Failure::usage("invalid message", "the text is empty"));
            }
        }
        Command::Messages { chat, limit, .. } => {
            if let Some(chat) = chat {
                protocol::recipient_jid(chat)
                    .map_err(|why| Failure::usage(&format!("invalid chat {chat:?}"), why))?;
            }
            if !(1..=protocol::MAX_PAGE).contains(limit) {
                return Err(Failure::usage(
                    "invalid --limit",
                    format!("must be 1 to {}", protocol::MAX_PAGE),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

struct Output {
    json: bool,
}

impl Output {
    /// Prints a one-shot result as indented JSON, exactly as walinkd sent it
    /// (fields newer than this CLI included).
    fn json(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        );
    }

    /// Prints one line of a JSON-lines stream, flushed at once for pipes.
    fn json_line(&self, value: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
        let _ = stdout.flush();
    }
}

/// Calls a one-shot method; in `--json` mode prints the raw result.
async fn call<T: DeserializeOwned>(
    client: &mut Client,
    out: &Output,
    method: &str,
    params: Value,
    what: &str,
) -> Result<T, Failure> {
    let value = client
        .call(method, params)
        .await
        .map_err(|e| Failure::client(what, e))?;
    if out.json {
        out.json(&value);
    }
    decode(value).map_err(|e| Failure::client(what, e))
}

fn account_filter(account: Option<String>) -> Value {
    match account {
        Some(account) => json!({ "account": account }),
        None => json!({}),
    }
}

fn now() -> u64 {
    protocol::unix_secs(std::time::SystemTime::now())
}

async fn status(client: &mut Client, out: &Output, account: Option<String>) -> Result<u8, Failure> {
    let single = account.is_some();
    let result: StatusResult = call(
        client,
        out,
        method::STATUS,
        account_filter(account),
        "status",
    )
    .await?;
    if !out.json {
        match (single, result.accounts.as_slice()) {
            (true, [one]) => print!("{}", render::status_detail(one, now())),
            (_, accounts) => print!("{}", render::status_table(accounts, now())),
        }
    }
    Ok(exit::OK)
}

async fn health(client: &mut Client, out: &Output, account: Option<String>) -> Result<u8, Failure> {
    let result: HealthResult = call(
        client,
        out,
        method::HEALTH,
        account_filter(account),
        "health",
    )
    .await?;
    if !out.json {
        print!("{}", render::health_table(&result.accounts));
    }
    Ok(match result.level {
        HealthLevel::Healthy => exit::OK,
        HealthLevel::Degraded => exit::DEGRADED,
        HealthLevel::Critical => exit::CRITICAL,
    })
}

async fn action(
    client: &mut Client,
    out: &Output,
    method: &str,
    account: &str,
) -> Result<u8, Failure> {
    let what = method.replace('_', "-");
    let result: ActionResult =
        call(client, out, method, json!({ "account": account }), &what).await?;
    if !out.json {
        println!("{}: {}", result.account, result.state);
        if result.state == protocol::AccountState::WaitingForPairing {
            println!(
                "Link it with `walink qr {0}`, or `walink pair-code {0} PHONE`.",
                result.account
            );
        }
    }
    Ok(exit::OK)
}

async fn qr(client: &mut Client, out: &Output, account: &str, raw: bool) -> Result<u8, Failure> {
    let what = format!("qr {account}");
    let fail = |e| Failure::client(&what, e);
    let redraw = !raw && !out.json && std::io::stdout().is_terminal();
    let mut stream = client
        .stream(method::QR, json!({ "account": account }))
        .await
        .map_err(fail)?;
    while let Some(item) = stream.next().await.map_err(fail)? {
        match item {
            StreamItem::Notification(n) if n.method == notification::QR => {
                if out.json {
                    out.json_line(&n.params);
                    continue;
                }
                let code: QrNotification = decode(n.params).map_err(fail)?;
                show_qr(&code, raw, redraw).map_err(|why| Failure {
                    what: "cannot draw the QR code".to_owned(),
                    why,
                    code: exit::REFUSED,
                })?;
            }
            StreamItem::Notification(_) => {}
            StreamItem::Result(value) => {
                if out.json {
                    out.json_line(&value);
                } else {
                    let linked: QrResult = decode(value).map_err(fail)?;
                    if !raw {
                        println!("Linked as:");
                    }
                    println!("{}", linked.jid);
                }
                return Ok(exit::OK);
            }
        }
    }
    Err(fail(ClientError::Closed))
}

fn show_qr(code: &QrNotification, raw: bool, redraw: bool) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    if raw {
        let _ = writeln!(stdout, "{}", code.code);
    } else {
        let picture = qr::render(&code.code)
            .map_err(|e| format!("{e}; use --raw and render the payload with another tool"))?;
        if redraw {
            // Clear the screen and home the cursor so each code replaces the last.
            let _ = write!(stdout, "\x1b[2J\x1b[H");
        }
        let _ = writeln!(
            stdout,
            "{picture}\nScan with WhatsApp → Linked devices → Link a device (account {}).\nThis code is replaced in {}s; waiting for the phone…\n",
            code.account, code.timeout_secs
        );
    }
    let _ = stdout.flush();
    Ok(())
}

async fn events(client: &mut Client, out: &Output, account: Option<String>) -> Result<u8, Failure> {
    let fail = |e| Failure::client("events", e);
    let mut stream = client
        .stream(method::SUBSCRIBE, account_filter(account))
        .await
        .map_err(fail)?;
    while let Some(item) = stream.next().await.map_err(fail)? {
        match item {
            StreamItem::Notification(n) if n.method == notification::EVENT => {
                if out.json {
                    out.json_line(&n.params);
                } else {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}", render::event_line(&n.params));
                    let _ = stdout.flush();
                }
            }
            StreamItem::Notification(n) if n.method == notification::LAGGED => {
                if let Ok(lagged) = decode::<Lagged>(n.params) {
                    eprintln!(
                        "walink: missed {} event(s): this reader fell behind; events after this line are complete again",
                        lagged.missed
                    );
                }
            }
            StreamItem::Notification(_) => {}
            StreamItem::Result(_) => return Ok(exit::OK),
        }
    }
    Err(fail(ClientError::Closed))
}
