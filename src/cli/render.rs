//! Human-readable output: tables, durations and times.

use std::fmt::Write as _;

use serde_json::Value;

use crate::ipc::protocol::{
    AccountHealth, AccountStatus, ChatInfo, ChatKind, ContactInfo, DiagnoseReport, GroupInfo,
    Health, MessagesResult, OutboxMessage, Recommendations, StepStatus,
};

/// Columns separated by two spaces, each as wide as its widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// "45s", "12m 05s", "3h 07m", "2d 04h".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// "5m 02s ago" or "in 4s", relative to `now` (both Unix seconds).
pub fn relative(at: u64, now: u64) -> String {
    if at <= now {
        format!("{} ago", duration(now - at))
    } else {
        format!("in {}", duration(at - now))
    }
}

/// Unix seconds as "2026-11-22 01:48:48 UTC".
pub fn timestamp(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{unix} (Unix seconds)"))
}

/// "40.0 KiB" style sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// The commands a user should run, from an account's recommendations.
pub fn recommended_commands(name: &str, r: &Recommendations) -> Vec<String> {
    let mut out = Vec::new();
    if r.should_restore_backup {
        out.push(format!("walink restore {name}"));
    }
    if r.should_clear_session {
        out.push(format!("walink clear-session {name}"));
    }
    if r.needs_pairing {
        out.push(format!(
            "walink qr {name}  (or: walink pair-code {name} PHONE)"
        ));
    }
    if r.should_reconnect {
        out.push(format!("walink reconnect {name}"));
    }
    out
}

fn state_cell(a: &AccountStatus, now: u64) -> String {
    match (a.state.as_str(), a.next_retry_at) {
        ("reconnecting", Some(at)) => format!(
            "reconnecting #{}, next {}",
            a.reconnect_attempts,
            relative(at, now)
        ),
        (state, _) => state.to_owned(),
    }
}

/// `walink status` for several accounts: a table, then what needs attention.
pub fn status_table(accounts: &[AccountStatus], now: u64) -> String {
    if accounts.is_empty() {
        return "no account is configured; add an [[account]] to walink.toml and reload walinkd\n"
            .to_owned();
    }
    let mut table = Table::new(&[
        "ACCOUNT",
        "STATE",
        "HEALTH",
        "JID",
        "UPTIME",
        "RECONNECTS",
        "LAST DISCONNECT",
    ]);
    for a in accounts {
        table.row(vec![
            a.name.clone(),
            state_cell(a, now),
            a.health.level.to_string(),
            or_dash(a.jid.clone()),
            or_dash(a.uptime_secs.map(duration)),
            a.automatic_reconnections.to_string(),
            or_dash(
                a.last_disconnect
                    .as_ref()
                    .map(|d| format!("{} ({})", d.reason, relative(d.at, now))),
            ),
        ]);
    }
    let mut out = table.render();
    out.push_str(&attention(
        accounts
            .iter()
            .map(|a| (a.name.as_str(), &a.health, &a.recommendations)),
    ));
    out
}

/// Reasons and recommended commands of accounts that are not healthy.
fn attention<'a>(
    accounts: impl Iterator<Item = (&'a str, &'a Health, &'a Recommendations)>,
) -> String {
    let mut out = String::new();
    for (name, health, recs) in accounts {
        let commands = recommended_commands(name, recs);
        if health.reasons.is_empty() && commands.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{name} ({}):", health.level);
        for reason in &health.reasons {
            let _ = writeln!(out, "  - {reason}");
        }
        for command in commands {
            let _ = writeln!(out, "  → {command}");
        }
    }
    out
}

/// `walink status ACCOUNT`: every field, one per line.
pub fn status_detail(a: &AccountStatus, now: u64) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("account", a.name.clone()),
        ("state", state_cell(a, now)),
        ("jid", or_dash(a.jid.clone())),
        ("health", a.health.level.to_string()),
    ];
    for reason in &a.health.reasons {
        rows.push(("", format!("- {reason}")));
    }
    rows.push((
        "connected since",
        or_dash(a.connected_since.map(|t| {
            format!(
                "{} ({})",
                timestamp(t),
                duration(a.uptime_secs.unwrap_or(now.saturating_sub(t)))
            )
        })),
    ));
    rows.push((
        "reconnects",
        format!(
            "{} automatic; {} failed attempt(s) since last connected",
            a.automatic_reconnections, a.reconnect_attempts
        ),
    ));
    rows.push((
        "last disconnect",
        or_dash(a.last_disconnect.as_ref().map(|d| {
            format!(
                "{} at {} ({})",
                d.reason,
                timestamp(d.at),
                relative(d.at, now)
            )
        })),
    ));
    rows.push((
        "next retry",
        or_dash(
            a.next_retry_at
                .map(|t| format!("{} ({})", timestamp(t), relative(t, now))),
        ),
    ));
    rows.push((
        "keepalive rtt",
        or_dash(a.last_keepalive_rtt_ms.map(|ms| format!("{ms} ms"))),
    ));
    rows.push((
        "web version",
        or_dash(a.version.as_ref().map(|v| {
            let source = match v.source.as_str() {
                "pinned" => "pinned in the config",
                "fetched" => "fetched from web.whatsapp.com",
                "stored" => "the last one that worked",
                "built_in" => "built into walink, none fetched yet",
                other => other,
            };
            format!("{} ({source})", v.version)
        })),
    ));
    if let Some(error) = a.version.as_ref().and_then(|v| v.fetch_error.as_ref()) {
        rows.push(("", format!("- {error}")));
    }
    rows.push((
        "session",
        if a.session.exists {
            format!(
                "stored, {}, {}",
                if a.session.valid { "valid" } else { "invalid" },
                size(a.session.size_bytes)
            )
        } else {
            "none (not paired)".to_owned()
        },
    ));
    for problem in &a.session.problems {
        rows.push(("problem", problem.clone()));
    }
    rows.push((
        "last backup",
        or_dash(
            a.session
                .last_backup_at
                .map(|t| format!("{} ({})", timestamp(t), relative(t, now))),
        ),
    ));
    rows.push((
        "outbox",
        format!(
            "{} waiting to be sent, {} failed",
            a.outbox.queued, a.outbox.failed
        ),
    ));
    for command in recommended_commands(&a.name, &a.recommendations) {
        rows.push(("recommended", command));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (key, value) in rows {
        let label = if key.is_empty() {
            String::new()
        } else {
            format!("{key}:")
        };
        let _ = writeln!(out, "{label:width$}{value}");
    }
    out
}

/// One line of text for a table cell: newlines shown as `⏎`, long text cut.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' { '⏎' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// `walink outbox`.
pub fn outbox_table(messages: &[OutboxMessage], now: u64) -> String {
    if messages.is_empty() {
        return "the outbox is empty: nothing waiting, nothing failed\n".to_owned();
    }
    let mut table = Table::new(&["ID", "TO", "STATUS", "QUEUED", "ATTEMPTS", "TEXT", "ERROR"]);
    for m in messages {
        table.row(vec![
            m.id.clone(),
            m.to.clone(),
            m.status.to_string(),
            relative(m.created_at, now),
            m.attempts.to_string(),
            one_line(&m.text, 40),
            or_dash(m.last_error.clone()),
        ]);
    }
    table.render()
}

/// `walink messages`, with how to get the next page (`args`: the account
/// and the filters the next page keeps).
pub fn messages_table(page: &MessagesResult, args: &str) -> String {
    if page.messages.is_empty() {
        return "no messages\n".to_owned();
    }
    let mut table = Table::new(&["CURSOR", "TIME", "CHAT", "SENDER", "ID", "TEXT"]);
    for m in &page.messages {
        let body = match (&m.text, m.kind.as_str()) {
            (Some(text), "text") => one_line(text, 60),
            (Some(text), kind) => format!("[{kind}] {}", one_line(text, 50)),
            (None, kind) => format!("[{kind}]"),
        };
        let sender = if m.from_me {
            match m.status {
                Some(status) => format!("me ({status})"),
                None => "me".to_owned(),
            }
        } else {
            m.sender_name
                .clone()
                .or_else(|| m.sender_phone.clone())
                .unwrap_or_else(|| m.sender.clone())
        };
        table.row(vec![
            m.cursor.to_string(),
            timestamp(m.timestamp),
            m.chat.clone(),
            sender,
            m.id.clone(),
            body,
        ]);
    }
    let mut out = table.render();
    if let Some(cursor) = page.next_cursor {
        let _ = writeln!(out, "\nolder: walink messages {args} --before {cursor}");
    }
    out
}

/// `walink chats`.
pub fn chats_table(chats: &[ChatInfo]) -> String {
    if chats.is_empty() {
        return "no messages yet\n".to_owned();
    }
    let mut table = Table::new(&["CHAT", "NAME", "KIND", "MESSAGES", "LAST MESSAGE"]);
    for c in chats {
        table.row(vec![
            c.chat.clone(),
            or_dash(c.name.clone()),
            match c.kind {
                ChatKind::Person => "person".to_owned(),
                ChatKind::Group => "group".to_owned(),
            },
            c.messages.to_string(),
            timestamp(c.last_at),
        ]);
    }
    table.render()
}

/// `walink groups`: one row per member.
pub fn groups_table(groups: &[GroupInfo]) -> String {
    if groups.is_empty() {
        return "the account is in no group\n".to_owned();
    }
    let mut table = Table::new(&["GROUP", "SUBJECT", "MEMBER", "NAME", "ADMIN"]);
    for g in groups {
        for (i, m) in g.participants.iter().enumerate() {
            let first = i == 0;
            table.row(vec![
                if first { g.jid.clone() } else { String::new() },
                if first {
                    g.subject.clone()
                } else {
                    String::new()
                },
                or_dash(m.phone.clone().or_else(|| m.lid.clone())),
                or_dash(m.name.clone()),
                if m.admin { "yes" } else { "" }.to_owned(),
            ]);
        }
    }
    table.render()
}

/// `walink contacts`, and its `--check`.
pub fn contacts_table(contacts: &[ContactInfo]) -> String {
    if contacts.is_empty() {
        return "no contacts yet: walink learns them from messages and `--check`\n".to_owned();
    }
    let checked = contacts.iter().any(|c| c.on_whatsapp.is_some());
    let mut header = vec!["PHONE", "LID", "NAME"];
    if checked {
        header.push("ON WHATSAPP");
    }
    let mut table = Table::new(&header);
    for c in contacts {
        let mut row = vec![
            or_dash(c.phone.clone()),
            or_dash(c.lid.clone()),
            or_dash(c.name.clone()),
        ];
        if let Some(on) = c.on_whatsapp {
            row.push(if on { "yes" } else { "no" }.to_owned());
        }
        table.row(row);
    }
    table.render()
}

/// `walink health`.
pub fn health_table(accounts: &[AccountHealth]) -> String {
    if accounts.is_empty() {
        return "no account is configured\n".to_owned();
    }
    let mut table = Table::new(&["ACCOUNT", "STATE", "HEALTH", "REASONS"]);
    for a in accounts {
        table.row(vec![
            a.name.clone(),
            a.state.to_string(),
            a.health.level.to_string(),
            if a.health.reasons.is_empty() {
                "-".to_owned()
            } else {
                a.health.reasons.join("; ")
            },
        ]);
    }
    let mut out = table.render();
    for a in accounts {
        let commands = recommended_commands(&a.name, &a.recommendations);
        if !commands.is_empty() {
            let _ = writeln!(out, "\n{}:", a.name);
            for command in commands {
                let _ = writeln!(out, "  → {command}");
            }
        }
    }
    out
}

/// `walink diagnose`: one line per step, its hint under it, then the verdict.
pub fn diagnose_report(r: &DiagnoseReport) -> String {
    let mut out = format!("Checking {}", r.url);
    if let Some(account) = &r.account {
        let _ = write!(out, " for account {account}");
    }
    let _ = writeln!(
        out,
        " (ip_family {}, {})",
        r.ip_family,
        r.proxy
            .as_deref()
            .map(|p| format!("proxy {p}"))
            .unwrap_or_else(|| "no proxy".into())
    );
    let mut table = Table::new(&["STEP", "RESULT", "TIME", "DETAIL"]);
    let mut hints = Vec::new();
    for step in &r.steps {
        table.row(vec![
            step.step.clone(),
            step.status.to_string(),
            step.duration_ms
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_else(|| "-".into()),
            step.detail.clone(),
        ]);
        if let (Some(hint), StepStatus::Failed | StepStatus::Warning) = (&step.hint, step.status) {
            hints.push(format!("{}: {hint}", step.step));
        }
    }
    out.push_str(&table.render());
    for hint in hints {
        let _ = writeln!(out, "  → {hint}");
    }
    let _ = writeln!(out, "{}: {}", if r.ok { "OK" } else { "FAILED" }, r.verdict);
    out
}

/// One `walink events` line from an event's params. Works from the raw
/// JSON so that kinds newer than this CLI still print.
pub fn event_line(params: &Value) -> String {
    let Value::Object(map) = params else {
        return params.to_string();
    };
    let at = map
        .get("at")
        .and_then(Value::as_u64)
        .map(timestamp)
        .unwrap_or_else(|| "-".to_owned());
    let account = map.get("account").and_then(Value::as_str).unwrap_or("-");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("event");
    let mut line = format!("{at}  {account}  {kind}");
    for (key, value) in map {
        if matches!(key.as_str(), "at" | "account" | "kind") || value.is_null() {
            continue;
        }
        let shown = match value {
            Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(line, " {key}={shown}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3 * 3600 + 7 * 60 + 5), "3h 07m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600), "2d 04h");
        assert_eq!(relative(100, 160), "1m 00s ago");
        assert_eq!(relative(164, 160), "in 4s");
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(timestamp(1_763_776_128), "2025-11-22 01:48:48 UTC");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(40_960), "40.0 KiB");
        assert_eq!(size(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\n");
    }

    #[test]
    fn event_lines_show_every_field() {
        let line = event_line(&json!({
            "account": "sales", "at": 0, "kind": "state_changed",
            "state": "reconnecting", "reason": "network", "attempt": 2, "next_retry_at": null
        }));
        assert_eq!(
            line,
            "1970-01-01 00:00:00 UTC  sales  state_changed attempt=2 reason=network state=reconnecting"
        );
        let future_kind =
            event_line(&json!({"account": "a", "at": 0, "kind": "new_thing", "text": "two words"}));
        assert!(
            future_kind.ends_with("new_thing text=\"two words\""),
            "{future_kind}"
        );
    }
}
