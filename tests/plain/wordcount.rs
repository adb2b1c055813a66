//! The word count example on YARN: `wordcount submit` stages the `wordcount` binary (a user's
//! job built on yarnflow) as the AM and TaskManager executable; its `tokenize` and keyed `count`
//! operators run on 3 TaskManagers at parallelism 3, the keyed exchange between them, and every
//! word's highest committed count is its true count.

use std::time::Duration;

use crate::support::yarn_app::*;
use crate::support::{self, MiniCluster};
use yarnflow::hadoop::rest::RmRest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wordcount_example_counts_every_word_exactly_on_three_taskmanagers() {
    let cluster = MiniCluster::get();
    let rest = RmRest::new(cluster.rm_rest());
    let name = support::unique("wordcount");
    let run = WordCountRun::prepare(cluster, &name, None).await;
    let conf = conf_dir(cluster, &name, "");
    let app = run.submit(cluster, &conf);
    wait_succeeded(&rest, &app, Duration::from_secs(180)).await;
    let containers = containers_of(cluster, &app);
    assert_eq!(
        containers.len(),
        4,
        "the AM and 3 TaskManagers: {containers:?}"
    );
    run.check_counts(cluster, &app).await;
    check_no_ha_data(cluster, &conf, &app).await;
}
