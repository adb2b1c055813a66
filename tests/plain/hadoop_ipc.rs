//! Bad input on the Hadoop IPC client: a peer that is not a well-behaved Hadoop server gets a
//! typed, one-line error, never a panic or a hang. (These peers are raw TCP sockets playing a
//! broken server, not stand-ins for YARN.)

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use yarnflow::hadoop::ipc::{Auth, IpcClient, IpcConfig, IpcError, Token};

/// A server that reads what the client sends for a while, then answers `reply` and closes
/// (or, with `hold`, keeps the connection open and silent).
async fn broken_server(reply: Vec<u8>, hold: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
                let _ = s.write_all(&reply).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

fn client(addr: &str, auth: Auth) -> IpcClient {
    let mut c = IpcConfig::new(
        addr,
        "org.apache.hadoop.yarn.api.ApplicationClientProtocolPB",
        auth,
    );
    c.connect_timeout = Duration::from_secs(2);
    c.call_timeout = Duration::from_secs(2);
    IpcClient::new(c)
}

fn simple() -> Auth {
    Auth::Simple { user: "u".into() }
}

fn token() -> Auth {
    Auth::Token(Token {
        identifier: vec![1],
        password: b"secret-password".to_vec(),
        kind: "YARN_AM_RM_TOKEN".into(),
        service: String::new(),
    })
}

async fn call(c: &IpcClient) -> IpcError {
    tokio::time::timeout(
        Duration::from_secs(10),
        c.call_raw("getApplicationReport", b""),
    )
    .await
    .expect("never hangs")
    .expect_err("a broken server cannot answer")
}

#[tokio::test]
async fn garbage_response_is_a_protocol_error() {
    let addr = broken_server(b"\x00\x00\x00\x05\xff\xff\xff\xff\xff".to_vec(), false).await;
    let e = call(&client(&addr, simple())).await;
    assert!(
        matches!(e, IpcError::ConnectionClosed { .. } | IpcError::Protocol(_)),
        "{e}"
    );
    assert!(e.to_string().contains(&addr), "{e}");
}

#[tokio::test]
async fn truncated_frame_is_reported() {
    let mut reply = 100u32.to_be_bytes().to_vec();
    reply.extend_from_slice(b"only ten b");
    let addr = broken_server(reply, false).await;
    let e = call(&client(&addr, simple())).await;
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(e.is_retriable());
}

#[tokio::test]
async fn oversized_length_prefix_is_refused() {
    let addr = broken_server(u32::MAX.to_be_bytes().to_vec(), true).await;
    let e = call(&client(&addr, simple())).await;
    assert!(e.to_string().contains("exceeds"), "{e}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let addr = broken_server(Vec::new(), true).await;
    let e = call(&client(&addr, simple())).await;
    assert!(matches!(e, IpcError::Timeout { .. }), "{e}");
}

#[tokio::test]
async fn garbage_during_sasl_is_an_error_without_the_password() {
    let addr = broken_server(b"\x00\x00\x00\x03abc".to_vec(), false).await;
    let e = call(&client(&addr, token())).await;
    let text = e.to_string();
    assert!(!text.contains("secret-password"), "{text}");
    assert_eq!(text.lines().count(), 1);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let e = call(&client(&addr, simple())).await;
    assert!(matches!(e, IpcError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
}
