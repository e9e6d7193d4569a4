//! walinkd: keeps WhatsApp accounts linked and online.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use walink::config::Mode;

/// glibc's malloc was a third of walinkd's CPU with thousands of accounts
/// (sled's page cache and the per-message work allocate and free small
/// buffers from every worker thread, and its arenas kept consolidating).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps WhatsApp accounts linked and online; controlled with `walink`.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Config file [default: /etc/walink/walink.toml, or
    /// $XDG_CONFIG_HOME/walink/walink.toml with --user]
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run for the current user: socket in $XDG_RUNTIME_DIR/walink/, state in
    /// ~/.local/state/walink/.
    #[arg(long)]
    user: bool,
}

fn default_config(mode: Mode) -> PathBuf {
    match mode {
        Mode::System => PathBuf::from("/etc/walink/walink.toml"),
        Mode::User => std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from(".config"))
            .join("walink/walink.toml"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mode = if args.user { Mode::User } else { Mode::System };
    let explicit = args.config.is_some();
    let path = args.config.unwrap_or_else(|| default_config(mode));
    limit_malloc_arenas();
    no_huge_pages();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("walinkd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(walink::daemon::run(path, explicit, mode));
    // A blocking task stuck on a failing disk (a flush that never returns)
    // must not hold the exit: the runtime is not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walinkd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that contends for the heap an arena of its own,
/// up to eight per core, and memory freed in one arena serves only that one.
/// Rust's allocations go to mimalloc, but SQLite's go to glibc from the
/// message database's threads; before mimalloc the 60 s chaos run ended at
/// 111.6 MiB of anonymous memory, and at 93.5 MiB with two arenas. Set
/// before any thread starts; `MALLOC_ARENA_MAX` in the environment still
/// wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called before any other thread exists; mallopt only sets
        // a tunable of glibc's allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// mimalloc reserves its memory in large aligned regions, and where
/// transparent huge pages are `always` (the kernel's default) each one it
/// touched became resident 2 MiB at a time: walinkd with three accounts
/// held 53 MiB of anonymous memory 8 s after start, 8 MiB with this. A
/// daemon that mostly waits gains nothing from them. A refusal (a seccomp
/// filter) leaves the default.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes no pointer; it only sets a flag of
    // this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
