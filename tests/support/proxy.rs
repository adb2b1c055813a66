//! A TCP forwarder the test controls, to cut a client off from a real server (ZooKeeper)
//! without touching the server: `cut()` drops every open connection and refuses new ones
//! until `restore()`; `mute()` keeps forwarding requests but drops every response, so the
//! server acts on a request whose answer the client never gets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    mute: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let mute = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let target = target.to_string();
        let (c, m, g) = (cut.clone(), mute.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mute = m.clone();
                let mut killed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = responses(&mut ro, &mut wi, &mute) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            cut,
            mute,
            generation,
        }
    }

    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// Drops every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again. After `mute()`, also drops the connections that lost
    /// responses (their byte streams are no longer whole) and forwards responses again.
    pub fn restore(&self) {
        if self.mute.swap(false, Ordering::SeqCst) {
            self.generation.send_modify(|g| *g += 1);
        }
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Keeps forwarding what clients send, drops everything the server answers.
    pub fn mute(&self) {
        self.mute.store(true, Ordering::SeqCst);
    }
}

/// Copies server → client, discarding while `mute` is set.
async fn responses(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mute: &AtomicBool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !mute.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
