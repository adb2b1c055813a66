//! Chaos benchmark on the real mini cluster (prints figures; not a timed test):
//!
//! ```text
//! cargo bench --bench chaos -- --seed S --faults N   # or YARNFLOW_MINICLUSTER_DIR=<cluster> ...
//! ```
//!
//! Runs one exactly-once job on YARN with ZooKeeper HA and injects N faults of every kind at
//! random (AM SIGKILL, TaskManager SIGKILL, TaskManager pause beyond `heartbeat.timeout`,
//! ZooKeeper stop, NameNode restart, DataNode stop and start; `tests/support/chaos.rs`), on a
//! cluster of 2 DataNodes with replication 2. Prints each fault with its time and how long the
//! job took to run again, then the final status, records, duplicates, missing, what was left
//! in ZooKeeper and HA storage, and the seed; exits non-zero unless the run passed.

#[path = "../tests/support/mod.rs"]
mod support;

use clap::Parser;
use support::{MiniCluster, chaos};

#[derive(Parser)]
struct Args {
    /// The seed of the faults' order, gaps and victims (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// How many faults to inject (each kind at least once from 6 on).
    #[arg(long, default_value_t = 12)]
    faults: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    let plan = chaos::Plan::new(seed, args.faults);
    let kinds: Vec<String> = plan.faults.iter().map(|k| k.to_string()).collect();
    println!(
        "chaos: seed {seed}, {} faults ({}), {} records",
        plan.faults.len(),
        kinds.join(", "),
        plan.records
    );
    let cluster = MiniCluster::shared(2);
    let report = chaos::run(cluster, &plan).await;
    println!("{report}");
    if report.passed() {
        println!("result:           PASSED");
        std::process::ExitCode::SUCCESS
    } else {
        println!("result:           FAILED");
        std::process::ExitCode::FAILURE
    }
}
