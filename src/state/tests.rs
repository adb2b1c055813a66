//! The backend and its snapshot file, through the local `BlobStore`.

use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::storage::BlobStore;
use crate::storage::local::LocalStore;

/// A stand-in for `key_groups::assign_to_key_group` (any stable hash will do here).
fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    crc32c::crc32c(key) % max_parallelism
}

fn range(start: u32, end: u32) -> KeyGroupRange {
    KeyGroupRange::new(start, end)
}

fn temp_dir(test: &str) -> String {
    let d = std::env::temp_dir().join(format!("yarnflow-state-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.display().to_string()
}

const MAX_PAR: u32 = 8;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn counts() -> ValueStateDescriptor<u64> {
    ValueStateDescriptor::new("count")
}

fn tags() -> MapStateDescriptor<String, Vec<i32>> {
    MapStateDescriptor::new("tags")
}

/// 100 keys over all key groups: a count of `i` each, and `i % 3` tags.
fn filled(range: KeyGroupRange) -> HeapKeyedStateBackend {
    let mut b = HeapKeyedStateBackend::new(range);
    let count = b.state(&counts()).unwrap();
    let tags = b.state(&tags()).unwrap();
    for i in 0..100 {
        let k = key(i);
        b.set_current_key(&k, key_group(&k, MAX_PAR)).unwrap();
        count.set(&mut b, i);
        for t in 0..i % 3 {
            tags.put(&mut b, format!("t{t}"), vec![t as i32; t as usize]);
        }
    }
    b
}

/// Checks `b` holds exactly what [`filled`] put in its key groups.
fn assert_filled(b: &mut HeapKeyedStateBackend) {
    let count = b.state(&counts()).unwrap();
    let tags = b.state(&tags()).unwrap();
    let mut seen = 0;
    for i in 0..100 {
        let k = key(i);
        if b.set_current_key(&k, key_group(&k, MAX_PAR)).is_err() {
            continue;
        }
        seen += 1;
        assert_eq!(count.get(b), Some(&i), "key {i}");
        let mut got: Vec<(String, Vec<i32>)> =
            tags.iter(b).map(|(k, v)| (k.clone(), v.clone())).collect();
        got.sort();
        let want: Vec<(String, Vec<i32>)> = (0..i % 3)
            .map(|t| (format!("t{t}"), vec![t as i32; t as usize]))
            .collect();
        assert_eq!(got, want, "key {i}");
    }
    assert_eq!(b.entries("count"), Some(seen));
}

#[test]
fn value_and_map_state_act_on_the_current_key() {
    let mut b = HeapKeyedStateBackend::new(range(0, 7));
    let count = b.state(&counts()).unwrap();
    let tags = b.state(&tags()).unwrap();
    b.set_current_key(b"a", 1).unwrap();
    assert_eq!(count.get(&b), None);
    *count.get_or_insert_with(&mut b, || 0) += 1;
    *count.get_or_insert_with(&mut b, || 0) += 1;
    assert_eq!(tags.put(&mut b, "x".into(), vec![1]), None);
    assert_eq!(tags.put(&mut b, "x".into(), vec![2]), Some(vec![1]));
    tags.get_mut(&mut b, "x").unwrap().push(3);
    b.set_current_key(b"b", 1).unwrap();
    assert_eq!(count.get(&b), None);
    assert!(tags.is_empty(&b) && !tags.contains(&b, "x"));
    count.set(&mut b, 7);
    b.set_current_key(b"a", 1).unwrap();
    assert_eq!(count.get(&b), Some(&2));
    assert_eq!(tags.get(&b, "x"), Some(&vec![2, 3]));
    assert_eq!(tags.remove(&mut b, "x"), Some(vec![2, 3]));
    // A map left empty takes its key with it.
    assert_eq!(b.entries("tags"), Some(0));
    count.clear(&mut b);
    assert_eq!((count.get(&b), b.entries("count")), (None, Some(1)));
    assert_eq!(b.current_key_group(), 1);

    let e = b.set_current_key(b"c", 8).unwrap_err();
    assert!(
        matches!(e, StateError::KeyGroupOutOfRange { key_group: 8, .. }),
        "{e}"
    );
    // The same name and type is the same state; another type is refused.
    assert!(b.state(&counts()).is_ok());
    let e = b
        .state(&ValueStateDescriptor::<String>::new("count"))
        .unwrap_err();
    assert!(e.to_string().contains("ValueState<u64>"), "{e}");
    let e = b
        .state(&MapStateDescriptor::<u64, u64>::new("count"))
        .unwrap_err();
    assert!(matches!(e, StateError::Incompatible { .. }), "{e}");
}

#[tokio::test]
async fn snapshot_round_trips_through_the_blob_store() {
    let dir = temp_dir("round-trip");
    let loc = snapshot_location(
        &crate::storage::open(&format!("file://{dir}"))
            .await
            .unwrap(),
        "job-1",
        3,
        "count-0",
    );
    assert_eq!(loc.path, format!("{dir}/job-1/chk-3/count-0"));
    let b = filled(range(0, MAX_PAR - 1));
    let handle = b
        .snapshot()
        .unwrap()
        .write(&*loc.store, &loc.path)
        .await
        .unwrap();
    assert_eq!(handle.length, std::fs::metadata(&loc.path).unwrap().len());
    // Handles are what checkpoint metadata stores.
    let json = serde_json::to_string(&handle).unwrap();
    assert_eq!(
        serde_json::from_str::<KeyedStateHandle>(&json).unwrap(),
        handle
    );

    // States registered before the restore are decoded at once ...
    let mut early = HeapKeyedStateBackend::new(range(0, MAX_PAR - 1));
    early.state(&counts()).unwrap();
    early.state(&tags()).unwrap();
    early
        .restore(&LocalStore, std::slice::from_ref(&handle))
        .await
        .unwrap();
    assert_filled(&mut early);
    // ... and the others when user code registers them.
    let mut late = HeapKeyedStateBackend::new(range(0, MAX_PAR - 1));
    late.restore(&LocalStore, &[handle]).await.unwrap();
    assert_eq!(
        late.state_names().collect::<Vec<_>>(),
        vec!["count", "tags"]
    );
    assert_filled(&mut late);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_subtask_owning_half_the_key_groups_restores_exactly_those() {
    let dir = temp_dir("half");
    let b = filled(range(0, MAX_PAR - 1));
    let path = format!("{dir}/chk-1/count-0");
    let handle = b
        .snapshot()
        .unwrap()
        .write(&LocalStore, &path)
        .await
        .unwrap();
    let mut total = 0;
    for half in [range(0, 3), range(4, 7)] {
        let mut r = HeapKeyedStateBackend::new(half);
        r.restore(&LocalStore, std::slice::from_ref(&handle))
            .await
            .unwrap();
        assert_filled(&mut r);
        let want = (0..100)
            .filter(|i| half.contains(key_group(&key(*i), MAX_PAR)))
            .count() as u64;
        assert!(want > 10, "the test keys spread over the key groups");
        assert_eq!(r.entries("count"), Some(want));
        total += want;
    }
    assert_eq!(total, 100);
    // Scaling in: two files of halves restore into one subtask; a handle outside the range
    // is not even read.
    let mut halves = Vec::new();
    for (i, half) in [range(0, 3), range(4, 7)].into_iter().enumerate() {
        let mut r = HeapKeyedStateBackend::new(half);
        r.restore(&LocalStore, std::slice::from_ref(&handle))
            .await
            .unwrap();
        let path = format!("{dir}/chk-2/count-{i}");
        halves.push(
            r.snapshot()
                .unwrap()
                .write(&LocalStore, &path)
                .await
                .unwrap(),
        );
    }
    let mut gone = halves[1].clone();
    gone.path = format!("{dir}/missing");
    let mut one = HeapKeyedStateBackend::new(range(0, 3));
    one.restore(&LocalStore, &[halves[0].clone(), gone])
        .await
        .unwrap();
    let mut whole = HeapKeyedStateBackend::new(range(0, 7));
    whole.restore(&LocalStore, &halves).await.unwrap();
    assert_filled(&mut whole);
    assert_eq!(whole.entries("count"), Some(100));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unregistered_state_survives_later_snapshots() {
    let dir = temp_dir("unregistered");
    let handle = filled(range(0, 7))
        .snapshot()
        .unwrap()
        .write(&LocalStore, &format!("{dir}/a"))
        .await
        .unwrap();
    // A restored job that registers only `count` in this attempt, and changes it.
    let mut b = HeapKeyedStateBackend::new(range(0, 7));
    b.restore(&LocalStore, &[handle]).await.unwrap();
    let count = b.state(&counts()).unwrap();
    let k = key(5);
    b.set_current_key(&k, key_group(&k, MAX_PAR)).unwrap();
    count.set(&mut b, 5);
    let handle = b
        .snapshot()
        .unwrap()
        .write(&LocalStore, &format!("{dir}/b"))
        .await
        .unwrap();
    let mut r = HeapKeyedStateBackend::new(range(0, 7));
    r.restore(&LocalStore, &[handle]).await.unwrap();
    assert_filled(&mut r);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `bytes` under `handle`'s path and restores it into a full backend.
async fn restore_bytes(handle: &KeyedStateHandle, bytes: Vec<u8>) -> Result<(), StateError> {
    LocalStore.write(&handle.path, Bytes::from(bytes)).await?;
    let mut b = HeapKeyedStateBackend::new(range(0, 7));
    b.restore(&LocalStore, std::slice::from_ref(handle)).await?;
    b.state(&counts())?;
    b.state(&tags())?;
    Ok(())
}

/// Recomputes the trailing checksum, as a foreign or buggy writer would have.
fn resealed(mut bytes: Vec<u8>) -> (Vec<u8>, u32) {
    let n = bytes.len();
    let crc = crc32c::crc32c(&bytes[..n - 4]);
    bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    (bytes, crc)
}

#[tokio::test]
async fn damaged_files_are_one_error_naming_the_file_and_the_damage() {
    let dir = temp_dir("damaged");
    let path = format!("{dir}/count-0");
    let good = filled(range(0, 7)).snapshot().unwrap();
    let handle = good.clone().write(&LocalStore, &path).await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    let reseal = |b: Vec<u8>| {
        let (b, crc) = resealed(b);
        (
            b,
            KeyedStateHandle {
                checksum: crc,
                ..handle.clone()
            },
        )
    };

    let mut flipped = bytes.clone();
    flipped[n / 2] ^= 0x40;
    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    let mut version = bytes.clone();
    version[4] = 9;
    let (version, version_handle) = reseal(version);
    let other_checksum = KeyedStateHandle {
        checksum: handle.checksum ^ 1,
        ..handle.clone()
    };
    let other_range = KeyGroupRange::new(0, 3);
    let cases: Vec<(&str, Vec<u8>, KeyedStateHandle, &str)> = vec![
        (
            "truncated",
            bytes[..n - 10].to_vec(),
            handle.clone(),
            "truncated or replaced",
        ),
        ("flipped", flipped, handle.clone(), "checksum mismatch"),
        (
            "bad magic",
            bad_magic,
            handle.clone(),
            "not a keyed state snapshot",
        ),
        (
            "version",
            version,
            version_handle,
            "unsupported format version 9",
        ),
        (
            "checksum",
            bytes.clone(),
            other_checksum,
            "is not the handle's",
        ),
        (
            "range",
            bytes.clone(),
            KeyedStateHandle {
                key_group_range: other_range,
                ..handle.clone()
            },
            "holds key groups 0..=7",
        ),
        (
            "empty",
            Vec::new(),
            KeyedStateHandle {
                length: 0,
                ..handle.clone()
            },
            "no YFKS magic",
        ),
    ];
    for (case, data, h, says) in cases {
        let e = restore_bytes(&h, data).await.unwrap_err();
        let text = e.to_string();
        assert!(e.is_corrupt() && !e.is_retriable(), "{case}: {e:?}");
        assert!(
            text.contains(&path) && text.contains(says),
            "{case}: {text}"
        );
    }

    // A block offset that points outside the body (the checksum resealed over it).
    let mut index = bytes.clone();
    let index_at = n - 16 - 8 * 8;
    index[index_at..index_at + 8].copy_from_slice(&(n as u64).to_le_bytes());
    let (index, h) = reseal(index);
    let e = restore_bytes(&h, index).await.unwrap_err().to_string();
    assert!(
        e.contains(&path) && e.contains("key group 0: block offset"),
        "{e}"
    );

    // A missing file is the storage layer's error, naming it.
    let gone = KeyedStateHandle {
        path: format!("{dir}/gone"),
        ..handle.clone()
    };
    let e = HeapKeyedStateBackend::new(range(0, 7))
        .restore(&LocalStore, &[gone])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StateError::Storage(s) if s.is_not_found()),
        "{e}"
    );
    assert!(e.to_string().contains("gone"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn values_of_another_type_are_corrupt_or_incompatible() {
    let dir = temp_dir("other-type");
    let path = format!("{dir}/count-0");
    let handle = filled(range(0, 7))
        .snapshot()
        .unwrap()
        .write(&LocalStore, &path)
        .await
        .unwrap();
    // A value the registered type cannot decode (the file's counts are not strings).
    let mut b = HeapKeyedStateBackend::new(range(0, 7));
    b.restore(&LocalStore, std::slice::from_ref(&handle))
        .await
        .unwrap();
    let e = b
        .state(&ValueStateDescriptor::<Vec<String>>::new("count"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&path) && e.contains("state 'count', key group"),
        "{e}"
    );
    assert!(e.contains("undecodable value"), "{e}");
    // The same when the state was registered first, and for a kind that differs.
    let mut b = HeapKeyedStateBackend::new(range(0, 7));
    b.state(&ValueStateDescriptor::<Vec<String>>::new("count"))
        .unwrap();
    let e = b
        .restore(&LocalStore, std::slice::from_ref(&handle))
        .await
        .unwrap_err();
    assert!(
        e.is_corrupt() && e.to_string().contains("undecodable value"),
        "{e}"
    );
    let mut b = HeapKeyedStateBackend::new(range(0, 7));
    b.state(&MapStateDescriptor::<u64, u64>::new("count"))
        .unwrap();
    let e = b
        .restore(&LocalStore, std::slice::from_ref(&handle))
        .await
        .unwrap_err();
    assert!(matches!(e, StateError::Incompatible { .. }), "{e}");

    std::fs::remove_dir_all(&dir).unwrap();
}

/// Fuzz-ish: every truncation and every single-byte change of a file, resealed so that the
/// checksum passes, is an error or a successful restore, never a panic.
#[test]
fn no_resealed_damage_panics() {
    let bytes = filled(range(0, 7)).snapshot().unwrap().bytes().to_vec();
    let n = bytes.len();
    let try_parse = |data: Vec<u8>| {
        let (data, crc) = if data.len() >= 4 {
            resealed(data)
        } else {
            (data, 0)
        };
        let handle = KeyedStateHandle {
            path: "/x".into(),
            length: data.len() as u64,
            checksum: crc,
            key_group_range: range(0, 7),
        };
        let mut b = HeapKeyedStateBackend::new(range(0, 7));
        if let Ok(file) = SnapshotFile::parse(&handle, Bytes::from(data))
            && b.restore_file(&file).is_ok()
        {
            let _ = b.state(&counts());
            let _ = b.state(&tags());
        }
    };
    for cut in (0..n).step_by(7) {
        try_parse(bytes[..cut].to_vec());
    }
    for i in 0..n.min(400) {
        for x in [0x01, 0x80, 0xff] {
            let mut d = bytes.clone();
            d[i] ^= x;
            try_parse(d);
        }
    }
}

/// `cargo test --release --lib state::tests::bench_value_state_updates -- --ignored --nocapture`
///
/// A keyed count: set the current key, add one to its `ValueState<u64>`. Records arrive in
/// stream order; their keys land all over the hash tables.
#[test]
#[ignore]
fn bench_value_state_updates() {
    const MAX: u32 = 128;
    const UPDATES: usize = 20_000_000;
    for distinct in [1_000_000u64, 10_000] {
        let keys: Vec<([u8; 8], u32)> = (0..distinct)
            .map(|i| {
                let k = i.to_be_bytes();
                (k, key_group(&k, MAX))
            })
            .collect();
        let mut b = HeapKeyedStateBackend::new(range(0, MAX - 1));
        let count = b.state(&counts()).unwrap();
        let mut run = |updates: usize| {
            let start = Instant::now();
            for (k, kg) in keys.iter().cycle().take(updates) {
                b.set_current_key(k, *kg).unwrap();
                *count.get_or_insert_with(&mut b, || 0) += 1;
            }
            start.elapsed()
        };
        let first = run(keys.len());
        let steady = run(UPDATES);
        println!(
            "ValueState<u64> count over {distinct} keys: first touch {:.2} M updates/s, then {:.2} M updates/s ({UPDATES} updates in {steady:.2?})",
            distinct as f64 / first.as_secs_f64() / 1e6,
            UPDATES as f64 / steady.as_secs_f64() / 1e6,
        );
        assert_eq!(b.entries("count"), Some(distinct));
    }
}

/// `cargo test --release --lib state::tests::bench_snapshot_and_restore -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn bench_snapshot_and_restore() {
    const KEYS: u64 = 1_000_000;
    const MAX: u32 = 128;
    let dir = temp_dir("bench");
    let mut b = HeapKeyedStateBackend::new(range(0, MAX - 1));
    let count = b.state(&counts()).unwrap();
    let words = b
        .state(&ValueStateDescriptor::<String>::new("last-word"))
        .unwrap();
    for i in 0..KEYS {
        let k = format!("word-{i}");
        b.set_current_key(k.as_bytes(), key_group(k.as_bytes(), MAX))
            .unwrap();
        count.set(&mut b, i);
        words.set(&mut b, k);
    }
    let start = Instant::now();
    let snapshot = b.snapshot().unwrap();
    let encoded = start.elapsed();
    let size = snapshot.len();
    let handle = snapshot
        .write(&LocalStore, &format!("{dir}/chk-1/count-0"))
        .await
        .unwrap();
    let written = start.elapsed();
    let start = Instant::now();
    let mut r = HeapKeyedStateBackend::new(range(0, MAX - 1));
    r.state(&counts()).unwrap();
    r.state(&ValueStateDescriptor::<String>::new("last-word"))
        .unwrap();
    r.restore(&LocalStore, &[handle]).await.unwrap();
    let restored = start.elapsed();
    println!(
        "snapshot of {KEYS} keys x 2 value states: {:.1} MB, encoded in {encoded:.2?}, written in {written:.2?}; restored in {restored:.2?}",
        size as f64 / 1e6
    );
    assert_eq!(r.entries("last-word"), Some(KEYS));
    std::fs::remove_dir_all(&dir).unwrap();
}
