//! A vaultstore service on a loopback port, for the service tests.

use std::path::Path;
use std::sync::Arc;

use vaultstore::service::auth::{Access, token};
use vaultstore::service::{ServeOptions, serve_on};
use vaultstore::{InitOptions, OpenOptions, Store};

/// A served store with its tokens.
pub struct Server {
    pub url: String,
    pub rw: String,
    pub ro: String,
    pub store: Arc<Store>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A fresh store served on a loopback port.
    pub fn start(max_body: u64) -> Server {
        Self::start_with(max_body, |_| {}, OpenOptions::default())
    }

    /// `prepare` runs on the new store's directory before it is opened
    /// (with `open`) and served.
    pub fn start_with(max_body: u64, prepare: impl FnOnce(&Path), open: OpenOptions) -> Server {
        let opts = ServeOptions {
            max_body,
            ..ServeOptions::default()
        };
        Self::start_full(opts, prepare, open)
    }

    /// A fresh store served with `opts`.
    pub fn start_opts(opts: ServeOptions) -> Server {
        Self::start_full(opts, |_| {}, OpenOptions::default())
    }

    /// A fresh store, prepared by `prepare`, served with `opts`.
    pub fn start_full_with(opts: ServeOptions, prepare: impl FnOnce(&Path)) -> Server {
        Self::start_full(opts, prepare, OpenOptions::default())
    }

    fn start_full(opts: ServeOptions, prepare: impl FnOnce(&Path), open: OpenOptions) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        drop(
            Store::init(
                &path,
                &InitOptions {
                    segment_bytes: 256 << 10,
                    ..InitOptions::default()
                },
            )
            .unwrap(),
        );
        prepare(&path);
        let store = Arc::new(Store::open_with(&path, open).unwrap());
        let rw = token(&path, Access::ReadWrite, false).unwrap();
        let ro = token(&path, Access::ReadOnly, false).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let serving = store.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                serve_on(listener, serving, opts, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Server {
            url: format!("http://{addr}"),
            rw,
            ro,
            store,
            stop: Some(tx),
            done: Some(done),
            _dir: dir,
        }
    }

    /// Stop serving (as on SIGTERM) and wait for the server to end.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(d) = self.done.take() {
            d.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
