//! A TCP proxy that delays every byte by a fixed time each way, without limiting throughput:
//! a far object store's round trip on a kernel without `netem`. It runs in a network
//! namespace of the test's (its thread enters it before it opens a socket) and counts the
//! bytes it carries back to clients: the object store's egress, whoever the client is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct DelayProxy {
    /// `HOST:PORT` clients connect to.
    pub address: String,
    /// Bytes sent from the upstream to clients so far.
    pub egress: Arc<AtomicU64>,
}

impl DelayProxy {
    /// Listens on `listen` in network namespace `ns` (`None`: this one) and forwards to
    /// `upstream`, delaying each direction by `one_way`. Lives as long as the test binary.
    pub fn start(ns: Option<&str>, listen: &str, upstream: &str, one_way: Duration) -> DelayProxy {
        let egress = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (ns, listen, upstream, count) = (ns.map(str::to_string), listen.to_string(), upstream.to_string(), egress.clone());
        std::thread::spawn(move || {
            if let Some(ns) = ns {
                use std::os::fd::AsRawFd;
                let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace");
                // SAFETY: a plain syscall on a descriptor we hold; it moves only this thread.
                assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns: {}", std::io::Error::last_os_error());
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind(&listen).await.expect("bind the proxy");
                tx.send(listener.local_addr().unwrap().to_string()).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    let (upstream, count) = (upstream.clone(), count.clone());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else { return };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::spawn(pipe(cr, sw, one_way, None));
                        pipe(sr, cw, one_way, Some(count)).await;
                    });
                }
            });
        });
        DelayProxy { address: rx.recv().unwrap(), egress }
    }
}

/// Copies `from` to `to`, each chunk sent `delay` after it arrived; counts into `count`.
async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration, count: Option<Arc<AtomicU64>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let reader = async move {
        loop {
            let mut buf = vec![0u8; 256 << 10];
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send((tokio::time::Instant::now() + delay, buf)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, buf)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&buf).await.is_err() {
                break;
            }
            if let Some(c) = &count {
                c.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
