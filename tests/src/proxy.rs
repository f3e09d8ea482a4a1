//! The shell every fault-injecting proxy shares: a listener on a free
//! 127.0.0.1 port, its own thread and runtime, one task per connection
//! reading requests with [`crate::http`], and a stop when the [`Proxy`] is
//! dropped. What to do with each request is the [`FaultPolicy`]'s: the
//! Kinesis faults of [`crate::fault_proxy`], the CloudWatch faults of
//! [`crate::cloudwatch_proxy`]. A policy that is also [`Faulted`] gives its
//! proxy the one test-facing API: `start(upstream, faults)`,
//! `set_faults`, `counts` (whose snapshot type the `counters!` macro declares).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http::{self, Head, Request, Response};

/// What a proxy does with the requests it receives.
pub trait FaultPolicy: Send + Sync + 'static {
    /// What [`FaultPolicy::on_head`] decided, carried to
    /// [`FaultPolicy::answer`] once the body is read.
    type Plan: Send;

    /// Name of the proxy's thread and of its error messages.
    const NAME: &'static str;

    /// Whether each connection carries one request only: every answer then
    /// says `Connection: close`, so the client never reuses a connection the
    /// proxy is about to close. Otherwise connections are kept alive until
    /// the client asks to close.
    const ONE_REQUEST_PER_CONNECTION: bool;

    /// A request head arrived, its body unread: `None` closes the
    /// connection at once (the unread body makes the close a reset).
    fn on_head(&self, head: &Head) -> Option<Self::Plan>;

    /// What to answer the whole request; `upstream` is `host:port` of the
    /// server behind the proxy (see [`http::forward`]). `None` closes the
    /// connection unanswered.
    fn answer(
        &self,
        plan: Self::Plan,
        upstream: &str,
        request: Request,
    ) -> impl Future<Output = Result<Option<Response>>> + Send;
}

/// A policy whose faults a test sets when the proxy starts and changes
/// while it runs, and whose counters it reads.
pub trait Faulted: FaultPolicy + Sized {
    /// What the test sets.
    type Faults: Send;
    /// A snapshot of the counters.
    type Counts;
    /// A fresh policy injecting `faults` (its random draws seeded from them).
    fn with_faults(faults: Self::Faults) -> Self;
    /// Where the faults in force are kept.
    fn faults(&self) -> &Mutex<Self::Faults>;
    /// What the proxy saw and did since it started.
    fn counts(&self) -> Self::Counts;
}

/// Declares a proxy's counters: the public snapshot struct (`u64` fields,
/// with their docs) and a private struct of the same `AtomicU64`s with a
/// `snapshot()`.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $counts:ident in $atomics:ident {
            $( $(#[$field_meta:meta])* $field:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $counts {
            $( $(#[$field_meta])* pub $field: u64, )*
        }

        #[derive(Default)]
        struct $atomics {
            $( $field: std::sync::atomic::AtomicU64, )*
        }

        impl $atomics {
            fn snapshot(&self) -> $counts {
                $counts {
                    $( $field: self.$field.load(std::sync::atomic::Ordering::Relaxed), )*
                }
            }
        }
    };
}
pub(crate) use counters;

struct Shared<P> {
    upstream: String,
    policy: P,
}

/// A running proxy on 127.0.0.1 in front of an upstream. Dropping it stops
/// it and closes every connection.
pub struct Proxy<P: FaultPolicy> {
    addr: SocketAddr,
    shared: Arc<Shared<P>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl<P: FaultPolicy> Proxy<P> {
    /// Start a proxy on a free 127.0.0.1 port forwarding to `upstream`
    /// (`http://host:port`, as [`crate::Moto::endpoint`] returns), its
    /// requests answered by `policy`.
    pub fn with_policy(upstream: &str, policy: P) -> Result<Proxy<P>> {
        let upstream = upstream
            .strip_prefix("http://")
            .with_context(|| format!("upstream {upstream} is not an http:// URL"))?
            .trim_end_matches('/')
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .with_context(|| format!("binding the {}", P::NAME))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { upstream, policy });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("building the {}'s runtime", P::NAME))?;
        let task_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(P::NAME.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("{}: {e}", P::NAME);
                            return;
                        }
                    };
                    tokio::select! {
                        _ = accept_loop(listener, task_shared) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels every connection task.
            })
            .with_context(|| format!("starting the {} thread", P::NAME))?;
        Ok(Proxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The endpoint URL to give the client instead of the upstream's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The policy, to change its faults or read its counters.
    pub fn policy(&self) -> &P {
        &self.shared.policy
    }
}

impl<P: Faulted> Proxy<P> {
    /// Start a proxy on a free 127.0.0.1 port in front of `upstream`
    /// (`http://127.0.0.1:PORT`, as [`crate::Moto::endpoint`] returns),
    /// injecting `faults`.
    pub fn start(upstream: &str, faults: P::Faults) -> Result<Proxy<P>> {
        Proxy::with_policy(upstream, P::with_faults(faults))
    }

    /// Replace the faults (the random sequence continues).
    pub fn set_faults(&self, faults: P::Faults) {
        if let Ok(mut f) = self.policy().faults().lock() {
            *f = faults;
        }
    }

    /// A snapshot of the counters.
    pub fn counts(&self) -> P::Counts {
        self.policy().counts()
    }
}

impl<P: FaultPolicy> Drop for Proxy<P> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop<P: FaultPolicy>(listener: TcpListener, shared: Arc<Shared<P>>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(&shared, sock).await {
                        eprintln!("{}: {e:#}", P::NAME);
                    }
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Serve one client connection until it closes, the policy closes it, or
/// (one request per connection) its first answer is sent.
async fn serve<P: FaultPolicy>(shared: &Shared<P>, mut sock: TcpStream) -> Result<()> {
    sock.set_nodelay(true).ok();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let Some(head) = http::read_head(&mut sock, &mut buf).await? else {
            return Ok(());
        };
        let Some(plan) = shared.policy.on_head(&head) else {
            return Ok(());
        };
        let Some(request) = http::read_body(&mut sock, &mut buf, head).await? else {
            return Ok(());
        };
        let close = P::ONE_REQUEST_PER_CONNECTION || request.head.close;
        let Some(response) = shared
            .policy
            .answer(plan, &shared.upstream, request)
            .await?
        else {
            return Ok(());
        };
        sock.write_all(&response.to_bytes(P::ONE_REQUEST_PER_CONNECTION))
            .await?;
        if close {
            sock.shutdown().await.ok();
            return Ok(());
        }
    }
}
