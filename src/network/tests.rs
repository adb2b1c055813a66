//! The data plane over real loopback TCP: two network environments stand for two
//! TaskManagers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::protocol::{Message, MessageCodec};
use super::*;

const JOB: &str = "job-net";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn env(config: NetworkConfig) -> NetworkEnvironment {
    NetworkEnvironment::start(config, loopback(), &CancellationToken::new())
        .await
        .unwrap()
}

fn pid(producer: u32) -> ResultPartitionId {
    ResultPartitionId::new(JOB, 1, 0, producer)
}

/// 16 bytes: producer, consumer, sequence number within that channel.
fn record(producer: u32, consumer: u32, seq: u64) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..4].copy_from_slice(&producer.to_be_bytes());
    r[4..8].copy_from_slice(&consumer.to_be_bytes());
    r[8..].copy_from_slice(&seq.to_be_bytes());
    r
}

fn parse(r: &[u8]) -> (u32, u32, u64) {
    (
        u32::from_be_bytes(r[..4].try_into().unwrap()),
        u32::from_be_bytes(r[4..8].try_into().unwrap()),
        u64::from_be_bytes(r[8..16].try_into().unwrap()),
    )
}

/// Emits `n` records round robin over the consumers, then ends the partition.
async fn produce(mut partition: ResultPartition, producer: u32, n: u64) {
    let consumers = partition.num_subpartitions() as u64;
    for i in 0..n {
        let c = (i % consumers) as u32;
        partition
            .emit(c as usize, &record(producer, c, i / consumers))
            .await
            .unwrap();
    }
    partition.finish().await.unwrap();
}

/// Reads the gate to its end; checks every record arrives once, in order, on its channel.
/// Returns the records per channel.
async fn consume(mut gate: InputGate, consumer: u32) -> Vec<u64> {
    let mut next = vec![0u64; gate.num_channels()];
    while let Some(item) = gate.next().await.unwrap() {
        if let Content::Buffer(buffer) = item.content {
            for r in buffer.records() {
                let (p, c, seq) = parse(&r.unwrap());
                assert_eq!((p as usize, c), (item.channel, consumer));
                assert_eq!(
                    seq, next[item.channel],
                    "channel {} out of order",
                    item.channel
                );
                next[item.channel] += 1;
            }
        }
    }
    next
}

fn inputs(locations: &[PartitionLocation]) -> Vec<InputChannelSpec> {
    locations
        .iter()
        .enumerate()
        .map(|(p, location)| InputChannelSpec {
            partition: pid(p as u32),
            location: location.clone(),
        })
        .collect()
}

/// Producers 0 and 1 on TaskManagers A and B, consumers 0 and 1 likewise; `local` makes the
/// same-TaskManager channels local, otherwise every channel crosses TCP.
async fn all_to_all(n: u64, local: bool) {
    let a = env(NetworkConfig::default()).await;
    let b = env(NetworkConfig::default()).await;
    let p0 = a.create_result_partition(pid(0), 2).unwrap();
    let p1 = b.create_result_partition(pid(1), 2).unwrap();
    let (ra, rb) = (
        PartitionLocation::Remote(a.data_address()),
        PartitionLocation::Remote(b.data_address()),
    );
    let here = |remote: &PartitionLocation| {
        if local {
            PartitionLocation::Local
        } else {
            remote.clone()
        }
    };
    let g0 = a
        .create_input_gate(0, &inputs(&[here(&ra), rb.clone()]))
        .await
        .unwrap();
    let g1 = b
        .create_input_gate(1, &inputs(&[ra.clone(), here(&rb)]))
        .await
        .unwrap();
    let producers = [
        tokio::spawn(produce(p0, 0, n)),
        tokio::spawn(produce(p1, 1, n)),
    ];
    let consumers = [tokio::spawn(consume(g0, 0)), tokio::spawn(consume(g1, 1))];
    for p in producers {
        p.await.unwrap();
    }
    for c in consumers {
        assert_eq!(c.await.unwrap(), vec![n / 2, n / 2]);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_to_all_over_tcp_delivers_every_record_once_in_order() {
    all_to_all(1_000_000, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_channels_deliver_like_remote_ones() {
    all_to_all(200_000, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_back_pressures_with_bounded_memory() {
    let config = NetworkConfig {
        segment_size: 1024,
        ..NetworkConfig::default()
    };
    let records_per_buffer = 1024 / (LENGTH_PREFIX + 16);
    let a = env(config.clone()).await;
    let b = env(config.clone()).await;
    let mut partition = a.create_result_partition(pid(0), 1).unwrap();
    let mut gate = b
        .create_input_gate(0, &inputs(&[PartitionLocation::Remote(a.data_address())]))
        .await
        .unwrap();
    let n = 40_000u64;
    let emitted = Arc::new(AtomicUsize::new(0));
    let max_outstanding = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (emitted, max_outstanding) = (emitted.clone(), max_outstanding.clone());
        tokio::spawn(async move {
            for i in 0..n {
                partition.emit(0, &record(0, 0, i)).await.unwrap();
                emitted.fetch_add(1, Ordering::Relaxed);
                max_outstanding.fetch_max(partition.outstanding_buffers(), Ordering::Relaxed);
            }
            partition.finish().await.unwrap();
        })
    };
    let (mut next, mut buffers, mut max_in_use, mut max_ahead) = (0u64, 0usize, 0usize, 0usize);
    while let Some(item) = gate.next().await.unwrap() {
        max_in_use = max_in_use.max(gate.buffers_in_use());
        if let Content::Buffer(buffer) = item.content {
            for r in buffer.record_slices() {
                assert_eq!(parse(r.unwrap()).2, next);
                next += 1;
            }
            buffers += 1;
            // The producer is far faster; how far ahead of us may it get?
            let ahead = emitted.load(Ordering::Relaxed) / records_per_buffer
                - buffers.min(emitted.load(Ordering::Relaxed) / records_per_buffer);
            max_ahead = max_ahead.max(ahead);
            drop(buffer);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    producer.await.unwrap();
    assert_eq!(next, n, "nothing dropped");
    let gate_bound = config.buffers_per_channel + config.floating_buffers_per_gate;
    assert!(
        max_in_use <= gate_bound,
        "gate held {max_in_use} buffers, bound {gate_bound}"
    );
    let outstanding = max_outstanding.load(Ordering::Relaxed);
    assert!(
        outstanding <= config.max_buffers_per_channel,
        "producer held {outstanding}"
    );
    // Producer queue + credits in flight + the one being filled: the producer stalled.
    let bound = config.max_buffers_per_channel + gate_bound + 2;
    assert!(
        max_ahead <= bound,
        "producer got {max_ahead} buffers ahead, bound {bound}"
    );
    assert!(
        buffers > 4 * bound,
        "the test must outrun the bounds ({buffers} buffers)"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_arrives_after_every_record_emitted_before_it() {
    let a = env(NetworkConfig::default()).await;
    let b = env(NetworkConfig::default()).await;
    let remote = PartitionLocation::Remote(a.data_address());
    let mut gate = b
        .create_input_gate(0, &inputs(&[remote.clone(), remote]))
        .await
        .unwrap();
    let per_epoch = 5_000u64;
    let mut producers = Vec::new();
    for p in 0..2u32 {
        let mut partition = a.create_result_partition(pid(p), 1).unwrap();
        producers.push(tokio::spawn(async move {
            let mut seq = 0;
            for checkpoint_id in 1..=3 {
                for _ in 0..per_epoch {
                    partition.emit(0, &record(p, 0, seq)).await.unwrap();
                    seq += 1;
                }
                let barrier = Event::CheckpointBarrier(CheckpointBarrier { checkpoint_id });
                partition.broadcast_event(barrier).await.unwrap();
            }
            partition.finish().await.unwrap();
        }));
    }
    let mut seen = [0u64; 2];
    let mut aligned: Vec<usize> = Vec::new();
    let mut barriers = Vec::new();
    while let Some(item) = gate.next().await.unwrap() {
        match item.content {
            Content::Buffer(buffer) => {
                assert!(
                    !aligned.contains(&item.channel),
                    "data from a channel blocked by its barrier"
                );
                for r in buffer.records() {
                    assert_eq!(parse(&r.unwrap()).2, seen[item.channel]);
                    seen[item.channel] += 1;
                }
            }
            Content::Event(Event::CheckpointBarrier(b)) => {
                assert_eq!(
                    seen[item.channel],
                    per_epoch * b.checkpoint_id,
                    "records before barrier {}",
                    b.checkpoint_id
                );
                barriers.push((item.channel, b.checkpoint_id));
                aligned.push(item.channel);
                if aligned.len() == 2 {
                    for ch in aligned.drain(..) {
                        gate.resume_consumption(ch);
                    }
                }
            }
            Content::Event(Event::EndOfPartition) => assert_eq!(seen[item.channel], per_epoch * 3),
        }
    }
    assert_eq!(barriers.len(), 6);
    for p in producers {
        p.await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn garbage_to_the_server_closes_the_connection_with_the_named_error() {
    let a = env(NetworkConfig::default()).await;
    let mut stream = tokio::net::TcpStream::connect(a.data_address())
        .await
        .unwrap();
    let me = stream.local_addr().unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut frames = FramedRead::new(stream, MessageCodec::new(1 << 20));
    let Some(Ok(Message::Error { message, .. })) = frames.next().await else {
        panic!("expected an error frame");
    };
    assert!(
        message.contains(&format!(
            "data connection with {me}: protocol violation: frame of 1195725856 bytes exceeds"
        )),
        "{message}"
    );
    assert!(
        frames.next().await.is_none(),
        "the server closes the connection"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn garbage_from_a_server_fails_the_gate_with_the_named_error() {
    let fake = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = fake.accept().await.unwrap();
        // A frame of a type nobody defined.
        socket
            .write_all(&[0, 0, 0, 5, 0x77, 0, 0, 0, 0])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let b = env(NetworkConfig::default()).await;
    let mut gate = b
        .create_input_gate(0, &inputs(&[PartitionLocation::Remote(fake_addr)]))
        .await
        .unwrap();
    let e = gate.next().await.unwrap_err();
    assert!(e.is_protocol_violation());
    assert_eq!(
        e.to_string(),
        format!("data connection with {fake_addr}: protocol violation: unknown message type 119")
    );
    b.shutdown().await;
}

#[tokio::test]
async fn a_request_for_a_partition_nobody_registers_fails_after_the_request_timeout() {
    let config = NetworkConfig {
        request_timeout: Duration::from_millis(200),
        ..NetworkConfig::default()
    };
    let a = env(config.clone()).await;
    let b = env(config).await;
    let mut gate = b
        .create_input_gate(0, &inputs(&[PartitionLocation::Remote(a.data_address())]))
        .await
        .unwrap();
    let e = gate.next().await.unwrap_err().to_string();
    assert!(
        e.contains(
            "no partition job job-net attempt 1 vertex 0 subtask 0 registered within 200 ms"
        ),
        "{e}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// `cargo test --release --lib network:: -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_of_16_byte_records_over_loopback() {
    let a = env(NetworkConfig::default()).await;
    let b = env(NetworkConfig::default()).await;
    let mut partition = a.create_result_partition(pid(0), 1).unwrap();
    let mut gate = b
        .create_input_gate(0, &inputs(&[PartitionLocation::Remote(a.data_address())]))
        .await
        .unwrap();
    let n = 50_000_000u64;
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        let mut r = BytesMut::zeroed(16);
        for i in 0..n {
            r[8..].copy_from_slice(&i.to_be_bytes());
            partition.emit(0, &r).await.unwrap();
        }
        partition.finish().await.unwrap();
    });
    let mut count = 0u64;
    let mut sum = 0u64;
    while let Some(item) = gate.next().await.unwrap() {
        if let Content::Buffer(buffer) = item.content {
            for r in buffer.record_slices() {
                sum = sum.wrapping_add(r.unwrap()[15] as u64);
                count += 1;
            }
        }
    }
    producer.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(count, n);
    let bytes = n as f64 * (16 + LENGTH_PREFIX) as f64;
    println!(
        "network throughput: {n} records of 16 bytes in {secs:.2} s: {:.2} M records/s, {:.0} MB/s on the wire (checksum {sum})",
        n as f64 / secs / 1e6,
        bytes / secs / 1e6
    );
    a.shutdown().await;
    b.shutdown().await;
}
