//! The short chaos run in `.ci/run` (issue 11, item 11): one fixed seed, 8 faults, each kind
//! at least once (`support::chaos`). It passes only with FINISHED/SUCCEEDED, every record
//! committed once, and no znode, HA blob or staging directory left. The long runs are
//! `cargo bench --bench chaos -- --seed S --faults N`.

use crate::support::{self, chaos};

const SEED: u64 = 11;
const FAULTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_of_every_fault_kind_keeps_the_job_exactly_once() {
    let _one = support::ONE_AT_A_TIME.lock().await;
    let cluster = crate::cluster();
    let plan = chaos::Plan::new(SEED, FAULTS);
    let report = chaos::run(cluster, &plan).await;
    println!("{report}");
    assert_eq!(report.kinds_missing(), vec![], "{report}");
    assert!(report.passed(), "{report}");
}
