//! What the service benchmarks share: the service started on a loopback
//! port over a store, with nothing scheduled during the measurement.

use std::sync::Arc;
use std::time::Duration;

use vaultstore::Store;
use vaultstore::service::{ServeOptions, serve_on};

/// A running service; `stop` ends it.
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Serve `store` on a free loopback port.
pub fn serve(store: Arc<Store>) -> Served {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let opts = ServeOptions {
                schedule_tick: Duration::from_secs(3600),
                ..ServeOptions::default()
            };
            serve_on(listener, store, opts, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let url = format!("http://{}", addr_rx.recv().unwrap());
    Served { url, stop, thread }
}

impl Served {
    /// Stop the service and wait for it.
    pub fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
    }
}
