//! TOML configuration: defaults, parsing and validation.
//!
//! Every error names the file, the line, the key and what is allowed, because
//! the person reading it is an administrator looking at `journalctl` output,
//! not at our source code.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::net::{IpFamily, Proxy};
use serde::Deserialize;
use toml::Spanned;

mod media;
mod storage;
pub use media::MediaConfig;
pub use storage::StorageConfig;

/// Where the system service keeps its socket.
pub const SYSTEM_SOCKET: &str = "/run/walink/walink.sock";
/// Where the system service keeps its state.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/walink";
/// Where the packaged config lives.
pub const SYSTEM_CONFIG: &str = "/etc/walink/walink.toml";
/// The group allowed to use the socket.
pub const DEFAULT_SOCKET_GROUP: &str = "walink";
/// The WhatsApp Web endpoint.
pub const DEFAULT_URL: &str = "wss://web.whatsapp.com/ws/chat";
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 20;
pub const DEFAULT_BACKOFF_SECS: [u64; 5] = [1, 2, 5, 15, 60];
pub const DEFAULT_JITTER: f64 = 0.2;
/// Connection attempts in flight at once across all accounts: enough that a
/// cold start of thousands is limited by the handshakes' CPU, not by the
/// gate, and few enough that a mass drop reaches the server as a queue.
pub const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 32;
const MAX_MAX_CONCURRENT_HANDSHAKES: u64 = 10_000;
/// Largest file `send --file` takes, in MiB, unless the config says otherwise.
pub const DEFAULT_SEND_FILE_MAX_MIB: u64 = 16;
/// walinkd holds a file in memory while it arrives and while it uploads.
const MAX_SEND_FILE_MAX_MIB: u64 = 100;

const MAX_CONNECT_TIMEOUT_SECS: u64 = 300;
const MAX_BACKOFF_STEP_SECS: u64 = 3600;
const MAX_JITTER: f64 = 0.9;
const MAX_ACCOUNT_NAME_LEN: usize = 32;

/// Whether the daemon runs as the system service or for one user (`walinkd --user`).
/// It only changes the defaults of `daemon.socket` and `daemon.state_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    User,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub connection: ConnectionConfig,
    pub accounts: Vec<AccountConfig>,
    pub storage: StorageConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// `None` when the config sets `socket_group = ""`: the socket keeps the
    /// daemon's own group.
    pub socket_group: Option<String>,
    pub log_target: LogTarget,
    /// Where to serve Prometheus metrics over HTTP; `None`: no listener.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Largest file `send --file` accepts, in MiB.
    pub send_file_max_mib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// journald when stderr is connected to the journal (`JOURNAL_STREAM`), else stderr.
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    pub url: String,
    pub connect_timeout_secs: u64,
    pub backoff_secs: Vec<u64>,
    pub jitter: f64,
    /// Connection attempts (dial to login) in flight at once, all accounts.
    pub max_concurrent_handshakes: usize,
    /// Pins the WhatsApp Web version announced to the server instead of
    /// fetching the current one from web.whatsapp.com at connect time. For
    /// offline use (a mock server); real deployments leave it unset.
    pub client_version: Option<(u32, u32, u32)>,
    pub ip_family: IpFamily,
    /// The proxy every account uses unless its own `proxy` says otherwise.
    pub proxy: Option<Proxy>,
}

impl ConnectionConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The delay before reconnect attempt `attempt` (1-based), before jitter;
    /// attempts past the end of the list reuse the last step.
    pub fn backoff_step(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.backoff_secs.len() - 1);
        Duration::from_secs(self.backoff_secs[index])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    pub name: String,
    pub enabled: bool,
    pub pair_on_start: bool,
    /// Messages older than this many days are deleted; `None` keeps them.
    pub retention_days: Option<u32>,
    /// At most this many messages are kept per direction; `None`: no limit.
    pub retention_max_messages: Option<u64>,
    /// The proxy this account dials through: its own `proxy`, else
    /// `connection.proxy`; `None` also for `proxy = "none"`.
    pub proxy: Option<Proxy>,
    pub media: MediaConfig,
    /// A message deleted for everyone keeps its text in the history.
    pub keep_revoked_text: bool,
}

/// An account's own proxy setting, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum AccountProxy {
    /// `connection.proxy`, if any.
    #[default]
    Inherit,
    /// `proxy = "none"`: no proxy even when `connection.proxy` is set.
    Direct,
    Use(Proxy),
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            url: DEFAULT_URL.to_owned(),
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            backoff_secs: DEFAULT_BACKOFF_SECS.to_vec(),
            jitter: DEFAULT_JITTER,
            max_concurrent_handshakes: DEFAULT_MAX_CONCURRENT_HANDSHAKES,
            client_version: None,
            ip_family: IpFamily::Auto,
            proxy: None,
        }
    }
}

impl Default for Config {
    /// The system service's defaults, with no account.
    fn default() -> Self {
        Config {
            daemon: DaemonConfig {
                socket: PathBuf::from(SYSTEM_SOCKET),
                state_dir: PathBuf::from(SYSTEM_STATE_DIR),
                socket_group: Some(DEFAULT_SOCKET_GROUP.to_owned()),
                log_target: LogTarget::Auto,
                metrics_listen: None,
                send_file_max_mib: DEFAULT_SEND_FILE_MAX_MIB,
            },
            connection: ConnectionConfig::default(),
            accounts: Vec::new(),
            storage: StorageConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config: {source}; check the path and its permissions", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syntax, type or validation error at a place in the file.
    #[error("{}:{line}: {key}{}: {message}", path.display(), value.as_deref().map(|v| format!(" = {v}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Dotted key such as `connection.jitter`, or the table name.
        key: String,
        /// The offending value as written, when there is one.
        value: Option<String>,
        /// What is wrong and what is allowed.
        message: String,
    },
    #[error(
        "cannot find a directory for user mode: {0} is not set; set it, or give daemon.socket and daemon.state_dir in the config"
    )]
    Environment(&'static str),
}

impl ConfigError {
    /// The 1-based line the error is on, when it is about a place in the file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The dotted key the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl Config {
    /// Defaults for `walinkd --user`: socket in `$XDG_RUNTIME_DIR/walink/`,
    /// state in `$XDG_STATE_HOME/walink` (or `~/.local/state/walink`).
    pub fn user_defaults() -> Result<Config, ConfigError> {
        Config::user_defaults_from(&|name| std::env::var_os(name))
    }

    fn user_defaults_from(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Config, ConfigError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let runtime = var("XDG_RUNTIME_DIR").ok_or(ConfigError::Environment("XDG_RUNTIME_DIR"))?;
        let state = match var("XDG_STATE_HOME") {
            Some(dir) => dir,
            None => var("HOME")
                .ok_or(ConfigError::Environment("HOME"))?
                .join(".local")
                .join("state"),
        };
        let mut config = Config::default();
        config.daemon.socket = runtime.join("walink").join("walink.sock");
        config.daemon.state_dir = state.join("walink");
        Ok(config)
    }

    /// Defaults for `mode`, with no account.
    pub fn defaults(mode: Mode) -> Result<Config, ConfigError> {
        match mode {
            Mode::System => Ok(Config::default()),
            Mode::User => Config::user_defaults(),
        }
    }

    /// Loads and validates a config file with the system service's defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_for(path, Mode::System)
    }

    /// Loads and validates a config file; keys it leaves out take `mode`'s defaults.
    pub fn load_for(path: &Path, mode: Mode) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path, mode)
    }

    /// Parses and validates config text; `path` only names the origin in errors.
    pub fn parse(text: &str, path: &Path, mode: Mode) -> Result<Config, ConfigError> {
        let locator = Locator { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|e| locator.toml_error(&e))?;
        // User-mode defaults need environment variables; only ask for them
        // when the file leaves a path out, so a complete file always loads.
        let needs_defaults = raw
            .daemon
            .as_ref()
            .is_none_or(|d| d.socket.is_none() || d.state_dir.is_none());
        let defaults = if needs_defaults {
            Config::defaults(mode)?
        } else {
            Config::default()
        };
        raw.validate(defaults, &locator)
    }

    /// The account called `name`, if configured.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

/// Parses `"2.3000.1023456789"` into its three parts.
fn parse_client_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Checks an account name: 1 to 32 of `a-z 0-9 _ -`. The name becomes part of
/// paths and journald fields, so nothing else is allowed.
pub fn validate_account_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ACCOUNT_NAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_ACCOUNT_NAME_LEN} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; only lowercase letters a-z, digits 0-9, '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    daemon: Option<RawDaemon>,
    connection: Option<RawConnection>,
    #[serde(default)]
    account: Vec<Spanned<RawAccount>>,
    storage: Option<storage::RawStorage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    socket_group: Option<Spanned<String>>,
    log_target: Option<LogTarget>,
    metrics_listen: Option<Spanned<String>>,
    send_file_max_mib: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    url: Option<Spanned<String>>,
    connect_timeout_secs: Option<Spanned<u64>>,
    backoff_secs: Option<Spanned<Vec<u64>>>,
    jitter: Option<Spanned<f64>>,
    max_concurrent_handshakes: Option<Spanned<u64>>,
    client_version: Option<Spanned<String>>,
    ip_family: Option<IpFamily>,
    proxy: Option<Spanned<String>>,
    proxy_credentials_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: Spanned<String>,
    enabled: Option<bool>,
    pair_on_start: Option<bool>,
    retention_days: Option<Spanned<i64>>,
    retention_max_messages: Option<Spanned<i64>>,
    proxy: Option<Spanned<String>>,
    proxy_credentials_file: Option<Spanned<String>>,
    media_dir: Option<Spanned<String>>,
    auto_download: Option<Spanned<Vec<String>>>,
    auto_download_max_mib: Option<Spanned<i64>>,
    keep_revoked_text: Option<bool>,
}

impl RawConfig {
    fn validate(self, defaults: Config, at: &Locator<'_>) -> Result<Config, ConfigError> {
        let mut config = defaults;
        if let Some(d) = self.daemon {
            if let Some(socket) = d.socket {
                config.daemon.socket = absolute_path(&socket, "daemon.socket", at)?;
            }
            if let Some(state_dir) = d.state_dir {
                config.daemon.state_dir = absolute_path(&state_dir, "daemon.state_dir", at)?;
            }
            if let Some(group) = d.socket_group {
                let name = group.get_ref();
                if !name.is_empty()
                    && !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                {
                    return Err(at.invalid(
                        group.span(),
                        "daemon.socket_group",
                        Some(format!("{name:?}")),
                        "must be a group name (letters, digits, '_', '-', '.'), or \"\" to keep the daemon's group",
                    ));
                }
                config.daemon.socket_group = (!name.is_empty()).then(|| name.clone());
            }
            if let Some(target) = d.log_target {
                config.daemon.log_target = target;
            }
            if let Some(listen) = d.metrics_listen {
                let parsed = listen.get_ref().parse().map_err(|_| {
                    at.invalid(
                        listen.span(),
                        "daemon.metrics_listen",
                        Some(format!("{:?}", listen.get_ref())),
                        "must be an IP address and port such as \"127.0.0.1:9464\"",
                    )
                })?;
                config.daemon.metrics_listen = Some(parsed);
            }
            if let Some(max) = d.send_file_max_mib {
                config.daemon.send_file_max_mib = u64::try_from(*max.get_ref())
                    .ok()
                    .filter(|m| (1..=MAX_SEND_FILE_MAX_MIB).contains(m))
                    .ok_or_else(|| {
                        at.invalid(
                            max.span(),
                            "daemon.send_file_max_mib",
                            Some(max.get_ref().to_string()),
                            &format!("must be a size in MiB from 1 to {MAX_SEND_FILE_MAX_MIB}"),
                        )
                    })?;
            }
        }
        if let Some(c) = self.connection {
            if let Some(url) = c.url {
                check_url(url.get_ref()).map_err(|why| {
                    at.invalid(
                        url.span(),
                        "connection.url",
                        Some(format!("{:?}", url.get_ref())),
                        &why,
                    )
                })?;
                config.connection.url = url.into_inner();
            }
            if let Some(timeout) = c.connect_timeout_secs {
                let secs = *timeout.get_ref();
                if !(1..=MAX_CONNECT_TIMEOUT_SECS).contains(&secs) {
                    return Err(at.invalid(
                        timeout.span(),
                        "connection.connect_timeout_secs",
                        Some(secs.to_string()),
                        &format!("must be between 1 and {MAX_CONNECT_TIMEOUT_SECS} seconds"),
                    ));
                }
                config.connection.connect_timeout_secs = secs;
            }
            if let Some(backoff) = c.backoff_secs {
                check_backoff(backoff.get_ref()).map_err(|why| {
                    at.invalid(
                        backoff.span(),
                        "connection.backoff_secs",
                        Some(format!("{:?}", backoff.get_ref())),
                        &why,
                    )
                })?;
                config.connection.backoff_secs = backoff.into_inner();
            }
            if let Some(jitter) = c.jitter {
                let value = *jitter.get_ref();
                if !(0.0..=MAX_JITTER).contains(&value) {
                    return Err(at.invalid(
                        jitter.span(),
                        "connection.jitter",
                        Some(value.to_string()),
                        &format!("must be between 0.0 and {MAX_JITTER:.1}"),
                    ));
                }
                config.connection.jitter = value;
            }
            if let Some(max) = c.max_concurrent_handshakes {
                let value = *max.get_ref();
                if !(1..=MAX_MAX_CONCURRENT_HANDSHAKES).contains(&value) {
                    return Err(at.invalid(
                        max.span(),
                        "connection.max_concurrent_handshakes",
                        Some(value.to_string()),
                        &format!("must be between 1 and {MAX_MAX_CONCURRENT_HANDSHAKES}"),
                    ));
                }
                config.connection.max_concurrent_handshakes = value as usize;
            }
            if let Some(version) = c.client_version {
                let parsed = parse_client_version(version.get_ref()).ok_or_else(|| {
                    at.invalid(
                        version.span(),
                        "connection.client_version",
                        Some(format!("{:?}", version.get_ref())),
                        "must be a WhatsApp Web version such as \"2.3000.1023456789\"",
                    )
                })?;
                config.connection.client_version = Some(parsed);
            }
            if let Some(family) = c.ip_family {
                config.connection.ip_family = family;
            }
            config.connection.proxy =
                match parse_proxy(c.proxy, c.proxy_credentials_file, "connection", at)? {
                    AccountProxy::Use(proxy) => Some(proxy),
                    _ => None,
                };
        }
        if let Some(storage) = self.storage {
            config.storage = storage.validate(at)?;
        }
        let mut seen = HashSet::new();
        for account in self.account {
            let account = account.into_inner();
            let name = account.name;
            validate_account_name(name.get_ref()).map_err(|why| {
                at.invalid(
                    name.span(),
                    "account.name",
                    Some(format!("{:?}", name.get_ref())),
                    &why,
                )
            })?;
            if !seen.insert(name.get_ref().clone()) {
                return Err(at.invalid(
                    name.span(),
                    "account.name",
                    Some(format!("{:?}", name.get_ref())),
                    "is already used by another [[account]]; names must be unique",
                ));
            }
            let retention_days = account
                .retention_days
                .map(|days| {
                    u32::try_from(*days.get_ref())
                        .ok()
                        .filter(|d| (1..=36_500).contains(d))
                        .ok_or_else(|| {
                            at.invalid(
                                days.span(),
                                "account.retention_days",
                                Some(days.get_ref().to_string()),
                                "must be a number of days from 1 to 36500 (leave it out to keep messages forever)",
                            )
                        })
                })
                .transpose()?;
            let retention_max_messages = account
                .retention_max_messages
                .map(|max| {
                    u64::try_from(*max.get_ref())
                        .ok()
                        .filter(|m| *m >= 1)
                        .ok_or_else(|| {
                            at.invalid(
                                max.span(),
                                "account.retention_max_messages",
                                Some(max.get_ref().to_string()),
                                "must be at least 1 (leave it out for no limit)",
                            )
                        })
                })
                .transpose()?;
            // [connection] was read above, so its proxy is known here.
            let proxy =
                match parse_proxy(account.proxy, account.proxy_credentials_file, "account", at)? {
                    AccountProxy::Inherit => config.connection.proxy.clone(),
                    AccountProxy::Direct => None,
                    AccountProxy::Use(proxy) => Some(proxy),
                };
            let media = media::RawMedia {
                dir: account.media_dir,
                auto_download: account.auto_download,
                max_mib: account.auto_download_max_mib,
            }
            .validate(
                MediaConfig::default_for(&config.daemon.state_dir, name.get_ref()),
                at,
            )?;
            config.accounts.push(AccountConfig {
                media,
                name: name.into_inner(),
                enabled: account.enabled.unwrap_or(true),
                pair_on_start: account.pair_on_start.unwrap_or(false),
                retention_days,
                retention_max_messages,
                proxy,
                keep_revoked_text: account.keep_revoked_text.unwrap_or(false),
            });
        }
        Ok(config)
    }
}

fn absolute_path(
    value: &Spanned<String>,
    key: &str,
    at: &Locator<'_>,
) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(value.get_ref());
    if !path.is_absolute() {
        return Err(at.invalid(
            value.span(),
            key,
            Some(format!("{:?}", value.get_ref())),
            "must be an absolute path",
        ));
    }
    Ok(path)
}

/// `proxy` and `proxy_credentials_file` of `table`. `"none"` (only meaningful
/// for an account) turns the daemon-wide proxy off.
fn parse_proxy(
    proxy: Option<Spanned<String>>,
    credentials_file: Option<Spanned<String>>,
    table: &str,
    at: &Locator<'_>,
) -> Result<AccountProxy, ConfigError> {
    let file = credentials_file
        .map(|f| {
            absolute_path(&f, &format!("{table}.proxy_credentials_file"), at).map(|p| (p, f.span()))
        })
        .transpose()?;
    let Some(proxy) = proxy else {
        return match file {
            Some((_, span)) => Err(at.invalid(
                span,
                &format!("{table}.proxy_credentials_file"),
                None,
                "is set but there is no proxy; add proxy = \"socks5://HOST:PORT\" (or http://) to the same table",
            )),
            None => Ok(AccountProxy::Inherit),
        };
    };
    if proxy.get_ref() == "none" {
        return Ok(AccountProxy::Direct);
    }
    // The value may hold a password: errors name the key, never echo it.
    let mut parsed = Proxy::parse(proxy.get_ref())
        .map_err(|why| at.invalid(proxy.span(), &format!("{table}.proxy"), None, &why))?;
    parsed.credentials_file = file.map(|(path, _)| path);
    Ok(AccountProxy::Use(parsed))
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or("must start with ws:// or wss://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("must name a host, e.g. wss://web.whatsapp.com/ws/chat".to_owned());
    }
    Ok(())
}

fn check_backoff(steps: &[u64]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("must list at least one delay in seconds, e.g. [1, 2, 5, 15, 60]".to_owned());
    }
    if steps
        .iter()
        .any(|s| !(1..=MAX_BACKOFF_STEP_SECS).contains(s))
    {
        return Err(format!(
            "each delay must be between 1 and {MAX_BACKOFF_STEP_SECS} seconds"
        ));
    }
    if steps.windows(2).any(|w| w[1] < w[0]) {
        return Err("delays must not decrease, e.g. [1, 2, 5, 15, 60]".to_owned());
    }
    Ok(())
}

/// Turns byte spans into lines and keys for error messages.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn invalid(
        &self,
        span: Range<usize>,
        key: &str,
        value: Option<String>,
        message: &str,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.line_of(span.start),
            key: key.to_owned(),
            value,
            message: message.to_owned(),
        }
    }

    /// toml's errors carry a span and a message but not the key path, so the
    /// key is recovered from the text: the table header above the span and
    /// the key on its line (or the field the message names).
    fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map(|s| s.start).unwrap_or(0);
        let line = self.line_of(offset);
        let lines: Vec<&str> = self.text.lines().collect();
        let line_text = lines.get(line - 1).map(|l| l.trim()).unwrap_or_default();
        let named_field = backticked(error.message());
        let is_header = line_text.starts_with('[');
        let table = if is_header {
            header_name(line_text)
        } else {
            lines[..(line - 1).min(lines.len())]
                .iter()
                .rev()
                .map(|l| l.trim())
                .find(|l| l.starts_with('['))
                .and_then(header_name)
        };
        let own_key = if is_header {
            None
        } else {
            line_text
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_owned())
                .filter(|k| !k.is_empty())
        };
        let field = match (error.message().starts_with("missing field"), own_key) {
            (true, _) | (false, None) => named_field,
            (false, Some(key)) => Some(key),
        };
        let key = match (table, field) {
            (Some(table), Some(field)) if is_header && table == field => table,
            (Some(table), Some(field)) => format!("{table}.{field}"),
            (Some(table), None) => table,
            (None, Some(field)) => field,
            (None, None) => "(document)".to_owned(),
        };
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            key,
            value: None,
            message: describe_toml_message(error.message()),
        }
    }
}

/// The first `name` quoted in backticks in a serde message.
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

fn header_name(line: &str) -> Option<String> {
    let inner = line.trim_start_matches('[');
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_owned())
}

/// serde's wording with the allowed alternatives made explicit.
fn describe_toml_message(message: &str) -> String {
    message
        .trim()
        .replacen("unknown field", "unknown key", 1)
        .replace("expected u64", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected an array")
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogTarget::Auto => "auto",
            LogTarget::Journald => "journald",
            LogTarget::Stderr => "stderr",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[daemon]
socket = "/tmp/x/walink.sock"
state_dir = "/tmp/x/state"

[connection]
url = "ws://127.0.0.1:40123/ws/chat"

[[account]]
name = "sales"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/walink/walink.toml"), Mode::System)
    }

    fn invalid(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(e @ ConfigError::Invalid { .. }) => {
                let shown = e.to_string();
                (e.line().unwrap(), e.key().unwrap().to_owned(), shown)
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.daemon.socket, Path::new("/tmp/x/walink.sock"));
        assert_eq!(config.daemon.state_dir, Path::new("/tmp/x/state"));
        assert_eq!(config.daemon.socket_group.as_deref(), Some("walink"));
        assert_eq!(config.daemon.log_target, LogTarget::Auto);
        assert_eq!(config.connection.url, "ws://127.0.0.1:40123/ws/chat");
        assert_eq!(config.connection.connect_timeout_secs, 20);
        assert_eq!(config.connection.backoff_secs, vec![1, 2, 5, 15, 60]);
        assert_eq!(config.connection.jitter, 0.2);
        assert_eq!(config.connection.max_concurrent_handshakes, 32);
        assert_eq!(
            config.accounts,
            vec![AccountConfig {
                name: "sales".into(),
                enabled: true,
                pair_on_start: false,
                retention_days: None,
                retention_max_messages: None,
                proxy: None,
                media: MediaConfig {
                    dir: "/tmp/x/state/media/sales".into(),
                    auto_download: Vec::new(),
                    auto_download_max_mib: 16,
                },
                keep_revoked_text: false,
            }]
        );
    }

    #[test]
    fn empty_file_gives_system_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.daemon.socket, Path::new(SYSTEM_SOCKET));
        assert_eq!(config.daemon.state_dir, Path::new(SYSTEM_STATE_DIR));
        assert_eq!(config.connection.url, DEFAULT_URL);
    }

    #[test]
    fn shipped_config_loads_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/walink.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.daemon, Config::default().daemon);
        assert_eq!(config.connection, ConnectionConfig::default());
    }

    #[test]
    fn out_of_range_value_names_file_line_key_and_range() {
        let text =
            "[daemon]\nsocket = \"/tmp/s\"\n\n[connection]\nurl = \"wss://a/b\"\n\njitter = 1.5\n";
        let (line, key, shown) = invalid(text);
        assert_eq!(line, 7);
        assert_eq!(key, "connection.jitter");
        assert_eq!(
            shown,
            "/etc/walink/walink.toml:7: connection.jitter = 1.5: must be between 0.0 and 0.9"
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let (line, key, shown) = invalid("[daemon]\nsocket = \"/tmp/s\"\nsokcet_group = \"x\"\n");
        assert_eq!((line, key.as_str()), (3, "daemon.sokcet_group"));
        assert!(shown.contains("unknown key `sokcet_group`"), "{shown}");
        assert!(
            shown.contains("socket_group"),
            "lists allowed keys: {shown}"
        );
    }

    #[test]
    fn unknown_table_is_an_error_naming_it() {
        let (line, key, shown) = invalid("[daemon]\n\n[conection]\nurl = \"wss://x\"\n");
        assert_eq!((line, key.as_str()), (3, "conection"));
        assert!(
            shown.contains("connection"),
            "lists allowed tables: {shown}"
        );
    }

    #[test]
    fn wrong_type_names_key_and_expected_type() {
        let (line, key, shown) = invalid("[connection]\nconnect_timeout_secs = \"20\"\n");
        assert_eq!((line, key.as_str()), (2, "connection.connect_timeout_secs"));
        assert!(shown.ends_with("expected a whole number"), "{shown}");
    }

    #[test]
    fn bad_log_target_lists_allowed_values() {
        let (line, key, shown) = invalid("[daemon]\nlog_target = \"syslog\"\n");
        assert_eq!((line, key.as_str()), (2, "daemon.log_target"));
        assert!(
            shown.contains("journald") && shown.contains("stderr"),
            "{shown}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let (line, _, shown) = invalid("[daemon]\nsocket = \"/tmp/s\n");
        assert_eq!(line, 2);
        assert!(shown.starts_with("/etc/walink/walink.toml:2: "), "{shown}");
    }

    #[test]
    fn account_without_name_is_reported_at_its_table() {
        let (line, key, shown) =
            invalid("[[account]]\nname = \"a\"\n\n[[account]]\nenabled = false\n");
        assert_eq!(key, "account.name");
        assert!((4..=5).contains(&line), "line {line}");
        assert!(shown.contains("missing field `name`"), "{shown}");
    }

    #[test]
    fn bad_and_duplicate_account_names() {
        let (line, key, shown) = invalid("[[account]]\nname = \"Sales\"\n");
        assert_eq!((line, key.as_str()), (2, "account.name"));
        assert!(shown.contains("'S'") && shown.contains("a-z"), "{shown}");

        let (line, _, _) = invalid(&format!("[[account]]\nname = \"{}\"\n", "a".repeat(33)));
        assert_eq!(line, 2);

        let (line, key, shown) = invalid(
            "[[account]]\nname = \"a\"\n[[account]]\nname = \"b\"\n[[account]]\nname = \"a\"\n",
        );
        assert_eq!((line, key.as_str()), (6, "account.name"));
        assert!(shown.contains("unique"), "{shown}");
    }

    #[test]
    fn retention_limits_are_checked() {
        let config = parse(
            "[[account]]\nname = \"a\"\nretention_days = 30\nretention_max_messages = 5000\n",
        )
        .unwrap();
        assert_eq!(config.accounts[0].retention_days, Some(30));
        assert_eq!(config.accounts[0].retention_max_messages, Some(5000));
        let (line, key, shown) = invalid("[[account]]\nname = \"a\"\nretention_days = 0\n");
        assert_eq!((line, key.as_str()), (3, "account.retention_days"));
        assert!(shown.contains("1 to 36500"), "{shown}");
        let (line, key, _) = invalid("[[account]]\nname = \"a\"\n\nretention_max_messages = -3\n");
        assert_eq!((line, key.as_str()), (4, "account.retention_max_messages"));
    }

    #[test]
    fn media_keys_are_checked() {
        let config = parse(
            "[[account]]\nname = \"a\"\nmedia_dir = \"/srv/media/a\"\n\
             auto_download = [\"image\", \"document\", \"image\"]\nauto_download_max_mib = 64\n",
        )
        .unwrap();
        let media = &config.accounts[0].media;
        assert_eq!(media.dir, Path::new("/srv/media/a"));
        assert_eq!(media.auto_download, ["document", "image"]);
        assert_eq!(media.auto_download_max_mib, 64);
        assert_eq!(
            parse("[[account]]\nname = \"b\"\n").unwrap().accounts[0]
                .media
                .dir,
            Path::new(SYSTEM_STATE_DIR).join("media/b"),
            "by default under the state directory"
        );
        let (line, key, shown) =
            invalid("[[account]]\nname = \"a\"\nauto_download = [\"image\", \"gif\"]\n");
        assert_eq!((line, key.as_str()), (3, "account.auto_download"));
        assert!(
            shown.contains("\"gif\"") && shown.contains("image, video"),
            "{shown}"
        );
        let (line, key, _) = invalid("[[account]]\nname = \"a\"\nauto_download_max_mib = 0\n");
        assert_eq!((line, key.as_str()), (3, "account.auto_download_max_mib"));
        let (_, key, _) = invalid("[[account]]\nname = \"a\"\nmedia_dir = \"media\"\n");
        assert_eq!(key, "account.media_dir");
    }

    #[test]
    fn url_scheme_must_be_websocket() {
        let (line, key, shown) =
            invalid("[connection]\n\nurl = \"https://web.whatsapp.com/ws/chat\"\n");
        assert_eq!((line, key.as_str()), (3, "connection.url"));
        assert!(shown.contains("ws:// or wss://"), "{shown}");
        let (_, _, shown) = invalid("[connection]\nurl = \"wss:///ws/chat\"\n");
        assert!(shown.contains("host"), "{shown}");
    }

    #[test]
    fn backoff_rules() {
        for (value, expect) in [
            ("[]", "at least one"),
            ("[1, 0]", "between 1 and"),
            ("[5, 2]", "must not decrease"),
        ] {
            let (line, key, shown) = invalid(&format!("[connection]\nbackoff_secs = {value}\n"));
            assert_eq!((line, key.as_str()), (2, "connection.backoff_secs"));
            assert!(shown.contains(expect), "{value}: {shown}");
        }
        let config = parse("[connection]\nbackoff_secs = [3, 3, 10]\n").unwrap();
        assert_eq!(config.connection.backoff_step(1), Duration::from_secs(3));
        assert_eq!(config.connection.backoff_step(3), Duration::from_secs(10));
        assert_eq!(config.connection.backoff_step(99), Duration::from_secs(10));
    }

    #[test]
    fn relative_paths_and_timeouts_are_rejected() {
        let (_, key, shown) = invalid("[daemon]\nstate_dir = \"state\"\n");
        assert_eq!(key, "daemon.state_dir");
        assert!(shown.contains("absolute"), "{shown}");
        let (_, key, _) = invalid("[connection]\nconnect_timeout_secs = 0\n");
        assert_eq!(key, "connection.connect_timeout_secs");
    }

    #[test]
    fn empty_socket_group_keeps_daemon_group() {
        let config = parse("[daemon]\nsocket_group = \"\"\n").unwrap();
        assert_eq!(config.daemon.socket_group, None);
    }

    #[test]
    fn missing_file_says_so() {
        let err = Config::load(Path::new("/nonexistent/walink.toml")).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("/nonexistent/walink.toml: cannot read"),
            "{shown}"
        );
    }

    #[test]
    fn user_defaults_follow_xdg() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let config = Config::user_defaults_from(&env(&[
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("HOME", "/home/ann"),
        ]))
        .unwrap();
        assert_eq!(
            config.daemon.socket,
            Path::new("/run/user/1000/walink/walink.sock")
        );
        assert_eq!(
            config.daemon.state_dir,
            Path::new("/home/ann/.local/state/walink")
        );

        let config = Config::user_defaults_from(&env(&[
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_STATE_HOME", "/srv/state"),
            ("HOME", "/home/ann"),
        ]))
        .unwrap();
        assert_eq!(config.daemon.state_dir, Path::new("/srv/state/walink"));

        let err = Config::user_defaults_from(&env(&[("HOME", "/home/ann")])).unwrap_err();
        assert!(
            err.to_string().contains("XDG_RUNTIME_DIR is not set"),
            "{err}"
        );
    }

    #[test]
    fn network_keys_parse_and_never_echo_a_proxy_password() {
        let config = parse(
            "[daemon]\nmetrics_listen = \"127.0.0.1:9464\"\n\
             [connection]\nip_family = \"ipv4\"\nproxy = \"socks5://u:hunter2@10.0.0.1:1080\"\n\
             [[account]]\nname = \"a\"\n\
             [[account]]\nname = \"b\"\nproxy = \"none\"\n\
             [[account]]\nname = \"c\"\nproxy = \"http://p:3128\"\nproxy_credentials_file = \"/etc/walink/proxy\"\n",
        )
        .unwrap();
        assert_eq!(
            config.daemon.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(config.connection.ip_family, IpFamily::Ipv4);
        let eff: Vec<Option<String>> = config
            .accounts
            .iter()
            .map(|a| a.proxy.as_ref().map(|p| p.to_string()))
            .collect();
        assert_eq!(
            eff,
            [
                Some("socks5://10.0.0.1:1080".to_string()),
                None,
                Some("http://p:3128".to_string())
            ]
        );
        assert_eq!(
            config.accounts[2].proxy.as_ref().unwrap().credentials_file,
            Some(PathBuf::from("/etc/walink/proxy"))
        );

        let (line, key, shown) = invalid("[connection]\n\nproxy = \"ftp://u:hunter2@p:21\"\n");
        assert_eq!((line, key.as_str()), (3, "connection.proxy"));
        assert!(!shown.contains("hunter2"), "{shown}");
        let (_, key, shown) = invalid("[connection]\nip_family = \"ipv5\"\n");
        assert_eq!(key, "connection.ip_family");
        assert!(shown.contains("ipv4") && shown.contains("auto"), "{shown}");
        let (_, key, shown) =
            invalid("[[account]]\nname = \"a\"\nproxy_credentials_file = \"/x\"\n");
        assert_eq!(key, "account.proxy_credentials_file");
        assert!(shown.contains("no proxy"), "{shown}");
        let (_, key, _) = invalid("[daemon]\nmetrics_listen = \"localhost:80\"\n");
        assert_eq!(key, "daemon.metrics_listen");
    }

    #[test]
    fn the_send_file_limit_is_bounded_and_revoked_text_may_be_kept() {
        assert_eq!(
            parse("").unwrap().daemon.send_file_max_mib,
            DEFAULT_SEND_FILE_MAX_MIB
        );
        let config = parse(
            "[daemon]\nsend_file_max_mib = 64\n\
             [[account]]\nname = \"a\"\nkeep_revoked_text = true\n",
        )
        .unwrap();
        assert_eq!(config.daemon.send_file_max_mib, 64);
        assert!(config.accounts[0].keep_revoked_text);
        for bad in ["0", "101", "-1"] {
            let (line, key, shown) = invalid(&format!("[daemon]\nsend_file_max_mib = {bad}\n"));
            assert_eq!((line, key.as_str()), (2, "daemon.send_file_max_mib"));
            assert!(shown.contains("from 1 to 100"), "{shown}");
        }
    }

    #[test]
    fn complete_file_loads_in_user_mode_without_environment_lookups() {
        let config = Config::parse(MINIMAL, Path::new("x.toml"), Mode::User).unwrap();
        assert_eq!(config.daemon.socket, Path::new("/tmp/x/walink.sock"));
    }
}
