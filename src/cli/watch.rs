//! `walink status --watch`: a live view of every account. On a terminal it
//! redraws in place with plain ANSI escapes (works over SSH, no curses) and
//! quits on `q` or Ctrl-C; otherwise it prints one plain line per account
//! whenever that account's line changes, for logs and pipes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::render::{self, Table, duration, or_dash, relative};
use super::{Failure, account_filter, exit, now};
use crate::ipc::client::{Client, ClientError, StreamItem, decode};
use crate::ipc::protocol::{AccountStatus, StatusResult, method, notification};

/// Puts the terminal in non-canonical, no-echo mode (keys arrive one at a
/// time, unseen) and restores it on drop, even on error paths. Signals stay
/// on, so Ctrl-C still arrives as SIGINT.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let fd = libc::STDIN_FILENO;
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: applying a termios derived from the current one.
        (unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } == 0).then_some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read in `enter`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}

/// Alternate screen and hidden cursor while drawing; undone on drop.
struct Screen;

impl Screen {
    fn enter() -> Screen {
        print!("\x1b[?1049h\x1b[?25l");
        let _ = std::io::stdout().flush();
        Screen
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
    }
}

/// Reads stdin on a thread of its own (it blocks) and reports `q` presses;
/// on a terminal each key counts, elsewhere a line `q`.
fn keys(raw: bool) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = stdin.read(&mut byte) {
            let quit = if raw {
                matches!(byte[0], b'q' | b'Q')
            } else if byte[0] == b'\n' {
                let q = line.eq_ignore_ascii_case(b"q");
                line.clear();
                q
            } else {
                line.push(byte[0]);
                false
            };
            if quit && tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// What happened last to each account, from the event stream. Secrets
/// (QR payloads) and message texts are left out.
fn event_summary(params: &Value) -> Option<(String, String)> {
    let account = params.get("account")?.as_str()?.to_owned();
    let kind = params.get("kind")?.as_str()?;
    let at = params
        .get("at")
        .and_then(Value::as_u64)
        .map(render::timestamp)
        .unwrap_or_default();
    let what = match kind {
        "state_changed" => {
            let state = params.get("state").and_then(Value::as_str).unwrap_or("?");
            match params.get("reason").and_then(Value::as_str) {
                Some(reason) => format!("{state}: {reason}"),
                None => state.to_owned(),
            }
        }
        "message_status" => format!(
            "message {}",
            params.get("status").and_then(Value::as_str).unwrap_or("?")
        ),
        "qr" => "new QR code".to_owned(),
        other => other.replace('_', " "),
    };
    Some((account, format!("{at} {what}")))
}

/// The plain line for one account: every field but the ones that change
/// by themselves (uptime), so a line is printed only when something happened.
fn plain_line(a: &AccountStatus, last_event: Option<&String>) -> String {
    format!(
        "{} state={} health={} reconnects={} attempts={} queued={} failed={} last_event={:?}",
        a.name,
        a.state,
        a.health.level,
        a.automatic_reconnections,
        a.reconnect_attempts,
        a.outbox.queued,
        a.outbox.failed,
        last_event.map(String::as_str).unwrap_or("-"),
    )
}

fn screen(accounts: &[AccountStatus], events: &BTreeMap<String, String>, now: u64) -> String {
    let mut table = Table::new(&[
        "ACCOUNT",
        "STATE",
        "HEALTH",
        "UPTIME",
        "RECONNECTS",
        "QUEUED",
        "FAILED",
        "LAST EVENT",
    ]);
    for a in accounts {
        table.row(vec![
            a.name.clone(),
            a.state.to_string(),
            a.health.level.to_string(),
            or_dash(a.uptime_secs.map(duration)),
            a.automatic_reconnections.to_string(),
            a.outbox.queued.to_string(),
            a.outbox.failed.to_string(),
            or_dash(events.get(&a.name).cloned()),
        ]);
    }
    let mut out = format!(
        "walink status --watch · {} · q or Ctrl-C quits\n\n",
        render::timestamp(now)
    );
    out.push_str(&table.render());
    for a in accounts.iter().filter(|a| !a.health.reasons.is_empty()) {
        out.push_str(&format!("\n{} ({}):\n", a.name, a.health.level));
        for reason in &a.health.reasons {
            out.push_str(&format!("  - {reason}\n"));
        }
        if let Some(d) = &a.last_disconnect {
            out.push_str(&format!(
                "  last disconnect: {} ({})\n",
                d.reason,
                relative(d.at, now)
            ));
        }
    }
    // Home, then each line cut to the width (a wrapped line would push the
    // picture down) and cleared to its end, then the rest of the screen: no
    // full clear, so the picture does not flicker.
    let width = columns();
    let mut framed = String::from("\x1b[H");
    for line in out.lines() {
        framed.extend(line.chars().take(width));
        framed.push_str("\x1b[K\n");
    }
    framed.push_str("\x1b[J");
    framed
}

/// With `json`, each change prints the whole `status` result as one JSON
/// line (uptimes left as they were at the change).
/// The terminal's width, 80 when it cannot be asked.
fn columns() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; it is read only on success.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

pub async fn watch(
    socket: &Path,
    account: Option<String>,
    every: Duration,
    json: bool,
) -> Result<u8, Failure> {
    let fail = |e: ClientError| Failure::client("status --watch", e);
    let mut poller = Client::connect(socket).await.map_err(fail)?;
    let mut subscriber = Client::connect(socket).await.map_err(fail)?;
    let mut events = subscriber
        .stream(method::SUBSCRIBE, account_filter(account.clone()))
        .await
        .map_err(fail)?;
    let terminal = !json && std::io::stdout().is_terminal();
    let raw = if terminal && std::io::stdin().is_terminal() {
        RawMode::enter()
    } else {
        None
    };
    let mut quit = keys(raw.is_some());
    let _screen = terminal.then(Screen::enter);
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Failure {
        what: "status --watch".into(),
        why: format!("cannot handle Ctrl-C: {e}"),
        code: exit::UNREACHABLE,
    })?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Failure {
        what: "status --watch".into(),
        why: format!("cannot handle SIGTERM: {e}"),
        code: exit::UNREACHABLE,
    })?;
    let mut tick = tokio::time::interval(every);
    let mut last_event: BTreeMap<String, String> = BTreeMap::new();
    let mut printed: BTreeMap<String, String> = BTreeMap::new();
    let mut printed_json = Value::Null;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            item = events.next() => match item.map_err(fail)? {
                Some(StreamItem::Notification(n)) if n.method == notification::EVENT => {
                    if let Some((name, what)) = event_summary(&n.params) {
                        last_event.insert(name, what);
                    }
                }
                Some(StreamItem::Notification(_)) => continue,
                _ => return Err(fail(ClientError::Closed)),
            },
            Some(()) = quit.recv() => break,
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
        let value = poller
            .call(method::STATUS, account_filter(account.clone()))
            .await
            .map_err(fail)?;
        let mut stdout = std::io::stdout().lock();
        if json {
            let mut settled = value.clone();
            for a in settled["accounts"].as_array_mut().into_iter().flatten() {
                a["uptime_secs"] = Value::Null;
            }
            if settled != printed_json {
                let _ = writeln!(stdout, "{value}");
                printed_json = settled;
            }
            let _ = stdout.flush();
            continue;
        }
        let status: StatusResult = decode(value).map_err(fail)?;
        if terminal {
            let _ = write!(stdout, "{}", screen(&status.accounts, &last_event, now()));
        } else {
            for a in &status.accounts {
                let line = plain_line(a, last_event.get(&a.name));
                if printed.get(&a.name) != Some(&line) {
                    let _ = writeln!(stdout, "{} {line}", render::timestamp(now()));
                    printed.insert(a.name.clone(), line);
                }
            }
        }
        let _ = stdout.flush();
    }
    drop(raw);
    Ok(exit::OK)
}
