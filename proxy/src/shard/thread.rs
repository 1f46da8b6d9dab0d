//! A shard's thread: its runtime and `LocalSet`, its accept loops, and its drain on
//! shutdown; and [`Shards`], the handle the control thread starts and stops them with.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Shard;
use super::listeners::Inbound;
use crate::connection::OpenConnection;
use crate::forward::MirrorsInFlight;
use crate::gateway::Gateway;
use crate::server::{self, Drain, TrafficBuilder};
use crate::upstream::client::ShardClients;

/// Native stack of a shard thread: plugins run JavaScript here.
const SHARD_STACK_BYTES: usize = 8 * 1024 * 1024;

/// The connections one shard serves: from its plain-text and TLS listeners.
pub struct ShardInbound {
    /// Plain text (HTTP/1.1, h2c).
    pub traffic: Inbound,
    /// TLS, when a TLS listener is configured.
    pub tls: Option<Inbound>,
}

/// The running shards.
pub struct Shards {
    stop: CancellationToken,
    /// Set once: from then on the shards accept connections.
    open: watch::Sender<bool>,
    finished: Vec<oneshot::Receiver<()>>,
}

impl Shards {
    /// Starts one shard per inbound set. Returns once every shard has attached to the
    /// plugin runtime, so that every snapshot loaded from then on reaches all of them.
    /// The shards accept nothing until [`Shards::open`]: connections made before wait in
    /// the listeners' backlog, so none is answered before the first configuration is in.
    pub async fn start(
        gateway: Arc<Gateway>,
        inbound: Vec<ShardInbound>,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let (open, opened) = watch::channel(false);
        let mut started = Vec::new();
        let mut finished = Vec::new();
        for (index, inbound) in inbound.into_iter().enumerate() {
            let (ready, is_ready) = oneshot::channel();
            let (done, is_done) = oneshot::channel();
            let context = ShardStart {
                index,
                gateway: gateway.clone(),
                inbound,
                tls: tls.clone(),
                opened: opened.clone(),
                stop: stop.clone(),
            };
            std::thread::Builder::new()
                .name(format!("weir-shard-{index}"))
                .stack_size(SHARD_STACK_BYTES)
                .spawn(move || {
                    context.run(ready);
                    let _ = done.send(());
                })?;
            started.push(is_ready);
            finished.push(is_done);
        }
        for ready in started {
            ready.await.map_err(|_| {
                std::io::Error::other("a shard stopped before it started serving")
            })??;
        }
        Ok(Self {
            stop,
            open,
            finished,
        })
    }

    /// Lets the shards accept connections.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Stops accepting on every shard and waits until each has drained its connections
    /// (at most the configured drain timeout).
    pub async fn stop(self) {
        self.stop.cancel();
        for finished in self.finished {
            let _ = finished.await;
        }
    }
}

/// What a shard thread starts with.
struct ShardStart {
    index: usize,
    gateway: Arc<Gateway>,
    inbound: ShardInbound,
    tls: Option<TlsAcceptor>,
    opened: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl ShardStart {
    /// The shard thread: serves until stopped, then drains.
    fn run(self, ready: oneshot::Sender<std::io::Result<()>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, self.serve(ready));
    }

    async fn serve(self, ready: oneshot::Sender<std::io::Result<()>>) {
        let Self {
            index,
            gateway,
            inbound,
            tls,
            opened,
            stop,
        } = self;
        let shard = Rc::new(Shard {
            index,
            plugins: gateway.plugins.attach(),
            clients: ShardClients::start(),
            gateway: gateway.clone(),
            drain: Drain::default(),
            mirrors: MirrorsInFlight::default(),
        });
        let builder = Rc::new(server::traffic_builder(&gateway.config.limits));
        let mut accepting = tokio::task::JoinSet::new();
        let secure = match (inbound.tls, tls) {
            (Some(inbound), Some(acceptor)) => Some((inbound, Some(acceptor))),
            _ => None,
        };
        for (inbound, tls) in std::iter::once((inbound.traffic, None)).chain(secure) {
            let listening = Listening {
                shard: shard.clone(),
                tls,
                builder: builder.clone(),
            };
            match listening.start(inbound, opened.clone()) {
                Ok(task) => {
                    accepting.spawn_local(task);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        stop.cancelled().await;
        accepting.shutdown().await;
        shard
            .drain
            .finish(gateway.config.drain_timeout, index)
            .await;
    }
}

/// One listener of a shard and how its connections are served.
struct Listening {
    shard: Rc<Shard>,
    tls: Option<TlsAcceptor>,
    builder: Rc<TrafficBuilder>,
}

impl Listening {
    /// The accept loop for `inbound` (made here, so a socket the runtime cannot take is
    /// an error at start); it accepts once `opened` says so.
    fn start(
        self,
        inbound: Inbound,
        mut opened: watch::Receiver<bool>,
    ) -> std::io::Result<impl std::future::Future<Output = ()> + 'static> {
        let source = match inbound {
            Inbound::Own(listener) => {
                Source::Listener(TcpListener::from_std(listener)?, Vec::new())
            }
            Inbound::Accepting { listener, others } => {
                Source::Listener(TcpListener::from_std(listener)?, others)
            }
            Inbound::HandedOver(receiver) => Source::HandedOver(receiver),
        };
        Ok(async move {
            // Dropped shards never open: nothing to accept for.
            if opened.wait_for(|open| *open).await.is_err() {
                return;
            }
            match source {
                Source::Listener(listener, others) => self.accept(listener, others).await,
                Source::HandedOver(mut receiver) => {
                    while let Some(stream) = receiver.recv().await {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => self.serve(stream),
                            Err(e) => tracing::warn!("taking a handed-over connection: {e}"),
                        }
                    }
                }
            }
        })
    }

    /// Accepts connections; with `others`, serves every `others.len() + 1`-th itself and
    /// hands the rest to those shards in turn.
    async fn accept(
        &self,
        listener: TcpListener,
        others: Vec<tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>>,
    ) {
        let mut turn = 0usize;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            turn = (turn + 1) % (others.len() + 1);
            if turn == 0 {
                self.serve(stream);
                continue;
            }
            match stream.into_std() {
                Ok(stream) => {
                    if others[turn - 1].send(stream).is_err() {
                        tracing::warn!("a shard is gone; its connection was dropped");
                    }
                }
                Err(e) => tracing::warn!("handing a connection over: {e}"),
            }
        }
    }

    fn serve(&self, stream: TcpStream) {
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        let gateway = &self.shard.gateway;
        let admitted = match gateway.admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                gateway.metrics.connection_refused(refusal);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::new(admitted, gateway.metrics.active_connections.clone());
        let connection = server::serve_traffic(
            self.shard.clone(),
            stream,
            peer,
            open,
            self.tls.clone(),
            self.builder.clone(),
        );
        self.shard.drain.connections.spawn_local(connection);
    }
}

/// Where an accept loop takes its connections from.
enum Source {
    Listener(
        TcpListener,
        Vec<tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>>,
    ),
    HandedOver(tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>),
}
