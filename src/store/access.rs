//! Before anything is opened: can this process read and write every file
//! of the state directory? A file left owned by root (walinkd was run as
//! root once) makes sled and SQLite fail with "Permission denied", which
//! is no damage: walinkd must stop and say which file to `chown`, and move
//! nothing aside.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A file of the state directory this process may not use.
#[derive(Debug, Error)]
#[error(
    "refusing to start: {path} belongs to {owner} with mode {mode:04o}, and walinkd runs as \
     {me}: {what}; nothing was changed. Fix it with `chown -R {fix_owner} {dir}` and \
     `chmod -R u+rwX,go-rwx {dir}`, then start walinkd again"
)]
pub struct AccessError {
    pub path: PathBuf,
    pub owner: String,
    pub mode: u32,
    pub me: String,
    pub what: &'static str,
    pub fix_owner: String,
    pub dir: String,
}

/// Checks `dir` and every file below it (to a few levels: sled's and
/// SQLite's files): each must belong to the user walinkd runs as, and give
/// it read and write (and search, on directories). A file of another owner
/// is refused even when this user could write it (root can): files of
/// mixed owners are how the next start as the service user fails.
pub fn check_state_dir(dir: &Path) -> Result<(), Box<AccessError>> {
    check_tree(dir, dir, 0)
}

fn check_tree(root: &Path, path: &Path, depth: usize) -> Result<(), Box<AccessError>> {
    const MAX_DEPTH: usize = 4;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let is_dir = meta.is_dir();
    let mode = if is_dir {
        libc::R_OK | libc::W_OK | libc::X_OK
    } else {
        libc::R_OK | libc::W_OK
    };
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let what = if meta.uid() != euid {
        Some("its files must belong to the user walinkd runs as")
    } else if !accessible(path, mode) {
        Some(if is_dir {
            "it cannot enter and write in it"
        } else {
            "it cannot read and write it"
        })
    } else {
        None
    };
    if let Some(what) = what {
        return Err(Box::new(refusal(root, path, &meta, what)));
    }
    if is_dir
        && depth < MAX_DEPTH
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for entry in entries.flatten() {
            check_tree(root, &entry.path(), depth + 1)?;
        }
    }
    Ok(())
}

fn accessible(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string for the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c_path.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

fn refusal(root: &Path, path: &Path, meta: &std::fs::Metadata, what: &'static str) -> AccessError {
    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let me = user_name(uid);
    AccessError {
        path: path.to_owned(),
        owner: format!(
            "{}:{}",
            user_name(meta.uid()),
            group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string())
        ),
        mode: meta.mode() & 0o7777,
        what,
        fix_owner: format!(
            "{}:{}",
            user_name_plain(uid),
            group_name(gid).unwrap_or_else(|| gid.to_string())
        ),
        me: format!("{me} (uid {uid})"),
        dir: root.display().to_string(),
    }
}

fn user_name_plain(uid: u32) -> String {
    passwd_name(uid).unwrap_or_else(|| uid.to_string())
}

fn user_name(uid: u32) -> String {
    match passwd_name(uid) {
        Some(name) => name,
        None => format!("uid {uid}"),
    }
}

fn passwd_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives the
    // strings `pwd` points into, which are copied before it is dropped.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success `pw_name` is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `passwd_name`.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success `gr_name` is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(grp.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_tree_passes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/db"), b"x").unwrap();
        check_state_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_file_of_another_owner_or_without_write_permission_is_named_with_its_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("messages.db");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // root may write anything: only the owner can tell.
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
        }
        let err = check_state_dir(dir.path()).unwrap_err();
        assert_eq!(err.path, file);
        let text = err.to_string();
        assert!(text.contains("mode 0400"), "{text}");
        assert!(text.contains("chown -R"), "{text}");
    }
}
