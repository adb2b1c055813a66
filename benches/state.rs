//! Keyed state benchmark (prints figures; not a timed test):
//!
//! ```text
//! cargo bench --bench state                       # local disk
//! cargo bench --bench state -- --hdfs hdfs://127.0.0.1:9000/bench   # also HDFS
//! YARNFLOW_BENCH_STATE_HDFS=hdfs://... cargo bench --bench state     # the same
//! ```
//!
//! One subtask's [`HeapKeyedStateBackend`] over 128 key groups with 1,000,000 distinct keys and
//! about 300 MB of state (per key a `ValueState<i64>` count and a 290-byte `ValueState<String>`
//! payload), then the phases of a checkpoint and of a restore as a keyed subtask runs them:
//! * the snapshot's synchronous part (`backend.snapshot()`: what the task loop waits for on a
//!   barrier) and the file's size;
//! * writing the file through the `BlobStore` to local disk (and HDFS if asked);
//! * reading it back and restoring it into one subtask owning every key group;
//! * restoring it into 2 subtasks of half the range each (a rescale from 1 to 2): each reads
//!   the file and decodes only its groups.
//!
//! The payload is a `String`, which serde writes as one slice. A `Vec<u8>` payload is written
//! and read byte by byte by serde (postcard's `collect_seq` / `visit_seq`), which about doubles
//! the snapshot and restore times; user state holding bytes should use `serde_bytes`.
//!
//! First it prints the keyed hot path a keyed subtask runs per record: the key and its group
//! found, the key set current, the built-in `count` updating its `ValueState<i64>` and
//! emitting `key,count` (10,000,000 numbers over 100,000 keys).
//!
//! HDFS through libhdfs needs the cluster's `JAVA_HOME` and `CLASSPATH` in the environment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use yarnflow::job::key_groups;
use yarnflow::state::{
    HeapKeyedStateBackend, KeyGroupRange, KeyedStateHandle, ValueStateDescriptor,
};
use yarnflow::storage::{BlobStore, Location};

const KEYS: u64 = 1_000_000;
const PAYLOAD: usize = 290;
const MAX_PARALLELISM: u32 = 128;

fn count() -> ValueStateDescriptor<i64> {
    ValueStateDescriptor::new("count-0")
}

fn payload() -> ValueStateDescriptor<String> {
    ValueStateDescriptor::new("payload-0")
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn rate(bytes: u64, d: Duration) -> f64 {
    mb(bytes) / d.as_secs_f64()
}

/// The backend of `range` with both states registered (as a keyed operator's first record
/// does).
fn backend(range: KeyGroupRange) -> HeapKeyedStateBackend {
    let mut b = HeapKeyedStateBackend::new(range);
    b.state(&count()).expect("count");
    b.state(&payload()).expect("payload");
    b
}

fn filled() -> HeapKeyedStateBackend {
    let mut b = HeapKeyedStateBackend::new(KeyGroupRange::new(0, MAX_PARALLELISM - 1));
    let c = b.state(&count()).unwrap();
    let p = b.state(&payload()).unwrap();
    let mut key = String::new();
    for i in 0..KEYS {
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "key-{i}");
        let group = key_groups::assign_to_key_group(key.as_bytes(), MAX_PARALLELISM);
        b.set_current_key(key.as_bytes(), group).unwrap();
        c.set(&mut b, i as i64);
        p.set(
            &mut b,
            char::from(b'a' + (i % 26) as u8)
                .to_string()
                .repeat(PAYLOAD),
        );
    }
    b
}

/// Writes the snapshot of `b` to `dir` and reads + restores it, full and halved.
async fn run(store: &dyn BlobStore, dir: &str, what: &str, b: &HeapKeyedStateBackend) {
    let path = format!("{dir}/chk-1/stage-1-subtask-0");
    let started = Instant::now();
    let snapshot = b.snapshot().expect("snapshot");
    let sync = started.elapsed();
    let size = snapshot.len() as u64;
    println!(
        "snapshot (synchronous part, the task loop waits): {sync:.2?} for {:.1} MB ({:.0} MB/s)",
        mb(size),
        rate(size, sync)
    );
    let started = Instant::now();
    let handle = snapshot.write(store, &path).await.expect("write");
    let write = started.elapsed();
    println!(
        "write to {what}: {write:.2?} ({:.0} MB/s); checkpoint total {:.2?}",
        rate(size, write),
        sync + write
    );
    restore(store, what, &handle).await;
    let _ = store.delete_dir(dir).await;
}

async fn restore(store: &dyn BlobStore, what: &str, handle: &KeyedStateHandle) {
    let started = Instant::now();
    let bytes = store.read(&handle.path).await.expect("read");
    let read = started.elapsed();
    drop(bytes);
    let started = Instant::now();
    let mut full = backend(KeyGroupRange::new(0, MAX_PARALLELISM - 1));
    full.restore(store, std::slice::from_ref(handle))
        .await
        .expect("restore");
    let restored = started.elapsed();
    assert_eq!(full.entries("count-0"), Some(KEYS));
    drop(full);
    println!(
        "read from {what}: {read:.2?} ({:.0} MB/s); read + restore into 1 subtask (128 key groups): {restored:.2?}",
        rate(handle.length, read)
    );
    let mut entries = 0;
    let mut times = Vec::new();
    for index in 0..2 {
        let range = key_groups::key_group_range_for_operator(MAX_PARALLELISM, 2, index);
        let started = Instant::now();
        let mut half = backend(range);
        half.restore(store, std::slice::from_ref(handle))
            .await
            .expect("restore");
        times.push(started.elapsed());
        entries += half.entries("count-0").unwrap();
    }
    assert_eq!(entries, KEYS, "the halves restore every key exactly once");
    println!(
        "read + restore into 2 subtasks of 64 key groups (a rescale 1 → 2): {:.2?} and {:.2?}",
        times[0], times[1]
    );
}

/// The per-record work of a keyed subtask running `key-by: { modulus: 100000 }` → `count`,
/// as `taskmanager/task.rs` does it (without the exchange).
fn hot_path() {
    use yarnflow::job::operators::{Chain, Record, key_str};
    use yarnflow::job::spec::{KeyBySpec, Step};
    const RECORDS: i64 = 10_000_000;
    let key = KeyBySpec::Modulus(100_000);
    let mut chain = Chain::from_stage(&[Step::Count], Some(&key)).expect("count");
    let mut b = HeapKeyedStateBackend::new(KeyGroupRange::new(0, MAX_PARALLELISM - 1));
    let (mut buf, mut out) = (String::new(), Vec::with_capacity(4));
    let started = Instant::now();
    for n in 0..RECORDS {
        let record = Record::Int(n);
        let k = key_str(&key, &record, &mut buf);
        let group = key_groups::assign_to_key_group(k.as_bytes(), MAX_PARALLELISM);
        b.set_current_key(k.as_bytes(), group).expect("owned");
        chain
            .process(record, Some(&mut b), &mut out)
            .expect("count");
        out.clear();
    }
    let d = started.elapsed();
    println!(
        "keyed hot path (key, group, set key, count, emit): {:.1} M records/s on one core ({:.0} ns per record)",
        RECORDS as f64 / d.as_secs_f64() / 1e6,
        d.as_nanos() as f64 / RECORDS as f64
    );
}

fn main() {
    hot_path();
    let hdfs = std::env::args()
        .skip_while(|a| a != "--hdfs")
        .nth(1)
        .or_else(|| std::env::var("YARNFLOW_BENCH_STATE_HDFS").ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let b = filled();
    println!(
        "keyed state: {KEYS} keys, a ValueState<i64> and a {PAYLOAD}-byte ValueState<String> each, {MAX_PARALLELISM} key groups; built in {:.2?}",
        started.elapsed()
    );
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("yarnflow-bench-state-{}", std::process::id()));
        let local: Arc<dyn BlobStore> = Arc::new(yarnflow::storage::local::LocalStore);
        run(local.as_ref(), &dir.display().to_string(), "local disk", &b).await;
        if let Some(uri) = hdfs {
            match yarnflow::storage::open(&uri).await {
                Ok(Location { store, path }) => {
                    run(store.as_ref(), &format!("{path}/bench-state"), "HDFS", &b).await
                }
                Err(e) => println!("HDFS skipped: {e}"),
            }
        }
    });
}
