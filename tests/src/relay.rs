//! A TCP relay a test can shut: a service out of reach (a registry down, a network cut) and
//! back, without stopping the service itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};

pub struct Relay {
    /// `http://127.0.0.1:<port>`: the relayed service's address for a client.
    pub url: String,
    open: Arc<AtomicBool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays to `target` (`http://host:port`), shut to begin with: every connection is
    /// closed as soon as it is made, as by a service that is down.
    pub async fn shut(target: &str) -> Self {
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the relay listens");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let open = Arc::new(AtomicBool::new(false));
        let accepting = tokio::spawn({
            let open = open.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let target = target.clone();
                    tokio::spawn(async move {
                        if let Ok(mut service) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut service).await;
                        }
                    });
                }
            }
        });
        Self {
            url,
            open,
            accepting,
        }
    }

    /// Relays every connection made from now on.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
