//! Fault injection against the real walinkd: a short seeded run in every
//! `make test`; `make chaos` runs this same test longer, with a seed of its
//! own (CHAOS_SECONDS, CHAOS_SEED, CHAOS_ACCOUNTS, CHAOS_KILL_WEIGHT; see
//! README.md).

mod harness;
#[path = "chaos/scenario.rs"]
mod scenario;

use scenario::ChaosConfig;

/// The short run's defaults: a fixed seed, so the suite runs the same plan
/// every time.
const SEED: u64 = 0x5EED_C4A0;
const SECONDS: u64 = 60;
const ACCOUNTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_and_duplicate_nothing() {
    scenario::run(ChaosConfig::from_env(SEED, SECONDS, ACCOUNTS)).await;
}
