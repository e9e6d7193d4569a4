//! Which socket the CLI talks to.

use std::path::{Path, PathBuf};

use crate::config::SYSTEM_SOCKET;

/// The system socket, unless it is absent and a user daemon's
/// (`$XDG_RUNTIME_DIR/walink/walink.sock`) exists. `--socket` and
/// `WALINK_SOCKET` override this before it is called.
pub fn default_socket() -> PathBuf {
    choose(
        Path::new(SYSTEM_SOCKET),
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join("walink").join("walink.sock")),
    )
}

fn choose(system: &Path, user: Option<PathBuf>) -> PathBuf {
    match user {
        Some(user) if !system.exists() && user.exists() => user,
        _ => system.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_socket_only_when_system_one_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("system.sock");
        let user = dir.path().join("user.sock");
        assert_eq!(choose(&system, Some(user.clone())), system);
        std::fs::write(&user, b"").unwrap();
        assert_eq!(choose(&system, Some(user.clone())), user);
        std::fs::write(&system, b"").unwrap();
        assert_eq!(choose(&system, Some(user)), system);
        assert_eq!(choose(&system, None), system);
    }
}
