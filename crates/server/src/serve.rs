//! Running the application on a bound socket, with TLS or plain HTTP, until a shutdown signal;
//! then letting in-flight requests finish.
//!
//! The accept loop is ours (not a framework's) because every connection must be bounded: a
//! connection limit with a clear refusal, a TLS handshake timeout, a header timeout (slowloris),
//! an idle timeout, a send-stall timeout for clients that stop reading, and a lingering close so
//! that an early answer (401, 413, 416) reaches a client that is still writing its body.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
use tower::ServiceExt;

/// How long in-flight requests may run after a shutdown signal.
const GRACE: Duration = Duration::from_secs(30);

pub enum Listener {
    Tls(Arc<rustls::ServerConfig>),
    Plain,
}

/// Bounds on what one connection (and one client) may hold. Defaults suit a public registry;
/// `berth serve` exposes each as a setting.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time from accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to receive one request's headers (HTTP/1.1; also how long a kept-alive connection
    /// may wait for its next request).
    pub header_timeout: Duration,
    /// A connection with no request in flight and nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// A request body that delivers nothing for this long is answered 408.
    pub body_timeout: Duration,
    /// A client that takes nothing we send for this long is disconnected.
    pub send_timeout: Duration,
    /// After an early answer, unread request bytes are read and discarded for at most this long
    /// (and at most `linger_bytes`) before the socket closes, so the kernel does not reset it.
    pub linger_time: Duration,
    pub linger_bytes: u64,
    /// Request bodies (blob chunks, monolithic uploads) one identity may stream at once.
    pub uploads_per_identity: usize,
    /// Upload sessions one identity may hold open.
    pub sessions_per_identity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(120),
            linger_time: Duration::from_secs(30),
            linger_bytes: 256 << 20,
            uploads_per_identity: 64,
            sessions_per_identity: 256,
        }
    }
}

/// HTTP/2 receive windows. hyper's defaults (1 MiB per stream and per connection, 16 KiB
/// frames) capped a 1 GiB blob push from a real h2 client at about 115 MB/s on loopback,
/// against 600+ MB/s over HTTP/1.1: the sender spent its time waiting for window updates.
/// With these, h2 pushes run at 400+ MB/s. A connection can then have at most 8 MiB of
/// unread request body buffered, which bounds what a client that sends without reading costs.
const H2_STREAM_WINDOW: u32 = 4 << 20;
const H2_CONN_WINDOW: u32 = 8 << 20;
const H2_MAX_FRAME: u32 = 256 << 10;
/// What hyper buffers per HTTP/1.1 connection. Its default (~408 KiB) let a client that stops
/// reading a blob pin two 256 KiB read chunks plus TLS buffers: 520 stalled downloads held
/// 445 MB. With this, hyper takes one chunk and waits: ~0.3 MiB per stalled connection.
const H1_MAX_BUF: usize = 128 << 10;
/// Response bytes buffered per h2 stream for a peer that does not read (hyper's default 400 KiB).
const H2_SEND_BUF: usize = 128 << 10;
/// Streams one h2 connection may open at once (hyper's default is 200).
const H2_MAX_STREAMS: u32 = 128;
/// While shutting down, idle connections are checked this often (dropped after two idle looks).
const SHUTDOWN_LOOK: Duration = Duration::from_millis(500);
/// Over-limit connections get this long to read their 503.
const REFUSAL_TIME: Duration = Duration::from_secs(5);
/// Over-limit connections beyond this many more are dropped at accept, without an answer.
const REFUSAL_SLOTS: usize = 64;

fn builder(limits: &Limits) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(H1_MAX_BUF);
    b.http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(H2_SEND_BUF)
        // Finds peers that vanished without a FIN.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves `app` on `socket` until `shutdown` completes, then drains connections.
pub async fn serve(
    socket: std::net::TcpListener,
    listener: Listener,
    limits: Limits,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let socket = tokio::net::TcpListener::from_std(socket)?;
    let tls = match listener {
        Listener::Tls(cfg) => Some(tokio_rustls::TlsAcceptor::from(cfg)),
        Listener::Plain => None,
    };
    let limits = Arc::new(limits);
    let http = Arc::new(builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSAL_SLOTS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let all_closed = Arc::new(tokio::sync::Notify::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = socket.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(r) => Err(r),
                Err(_) => continue, // far over the limit: drop at once
            },
        };
        let ctx = ConnCtx {
            tls: tls.clone(),
            limits: limits.clone(),
            http: http.clone(),
            app: app.clone(),
            stop: stop_rx.clone(),
        };
        open.fetch_add(1, Ordering::AcqRel);
        let (open, all_closed) = (open.clone(), all_closed.clone());
        tokio::spawn(async move {
            let over = permit.is_err();
            if over {
                tracing::warn!(%peer, "connection limit reached: refusing");
            }
            ctx.run(tcp, peer, over).await;
            drop(permit);
            if open.fetch_sub(1, Ordering::AcqRel) == 1 {
                all_closed.notify_waiters();
            }
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    drop(socket);
    let _ = stop_tx.send(true);
    let wait = async {
        loop {
            let notified = all_closed.notified();
            if open.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout(GRACE, wait).await;
    Ok(())
}

/// Answers a plain-HTTP request that reached the TLS port with a 400 in the registry's (and
/// the admin API's) error format, naming the https:// address to use. Reads the request head first (bounded by size
/// and by `deadline`) so that closing the socket does not reset it before the client reads
/// the answer.
async fn plain_http_on_tls_port(mut tcp: TcpStream, deadline: tokio::time::Instant) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            _ => break,
        }
    }
    let host = String::from_utf8_lossy(&head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned())
        // Echoed into the answer: only what a host[:port] may contain.
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let url = match host {
        Some(h) => format!("https://{h}/"),
        None => "https://".to_owned(),
    };
    let message = format!("the server speaks HTTPS; use {url}");
    let body = serde_json::json!({"errors": [{
        "code": "UNSUPPORTED",
        "message": message,
        "detail": null,
    }]})
    .to_string();
    // The answer to a HEAD has no body: the words go in a Warning header as well.
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         warning: 199 berth \"{message}\"\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout_at(deadline, async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

struct ConnCtx {
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Arc<Limits>,
    http: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    app: Router,
    stop: watch::Receiver<bool>,
}

impl ConnCtx {
    async fn run(self, tcp: TcpStream, peer: SocketAddr, over_limit: bool) {
        let activity = Arc::new(Activity::new());
        match &self.tls {
            Some(acceptor) => {
                let now = tokio::time::Instant::now();
                let deadline = now
                    .checked_add(self.limits.handshake_timeout)
                    .unwrap_or(now);
                // A TLS client starts with a handshake record (0x16), a plain-HTTP one with a
                // method name: the latter gets an answer it can show ("use https://") instead
                // of a TLS alert it would report as a garbled response.
                let mut first = [0u8; 1];
                match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
                    Ok(Ok(1..)) if first[0].is_ascii_alphabetic() => {
                        plain_http_on_tls_port(tcp, deadline).await;
                        return;
                    }
                    Ok(Ok(1..)) => {}
                    _ => return,
                }
                let io = Guarded::new(tcp, &self.limits, activity.clone());
                let accept = acceptor.accept(io);
                match tokio::time::timeout_at(deadline, accept).await {
                    Ok(Ok(tls)) => self.serve_io(tls, peer, activity, over_limit).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => {
                let io = Guarded::new(tcp, &self.limits, activity.clone());
                self.serve_io(io, peer, activity, over_limit).await
            }
        }
    }

    async fn serve_io<I>(self, io: I, peer: SocketAddr, activity: Arc<Activity>, over: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let watched = activity.clone();
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let app = app.clone();
            let activity = activity.clone();
            async move {
                if over {
                    return Ok::<_, std::convert::Infallible>(refusal());
                }
                req.extensions_mut().insert(ConnectInfo(peer));
                let guard = activity.begin();
                // The path only: query strings may carry tokens (`/oauth2/token?...`).
                let (method, path) = (req.method().clone(), req.uri().path().to_owned());
                let class = crate::metrics::classify(&path);
                let req = req.map(|inner| CountedIn { inner, class });
                let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
                let log = RequestLog {
                    method,
                    class,
                    path,
                    status: resp.status().as_u16(),
                    identity: resp.extensions().get::<LogIdentity>().map(|i| i.0.clone()),
                    peer,
                    start: guard.started,
                    bytes: 0,
                    done: false,
                };
                // The request counts as in flight until its response body is done.
                Ok(resp.map(|b| {
                    // Bodies known to be empty (HEAD, 204) may never be polled.
                    let mut log = log;
                    log.done = http_body::Body::is_end_stream(&b);
                    axum::body::Body::new(Tracked {
                        inner: b,
                        log,
                        _guard: guard,
                    })
                }))
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut stop = self.stop.clone();
        let deadline = tokio::time::sleep(REFUSAL_TIME);
        tokio::pin!(deadline);
        let mut stopping = false;
        // While stopping: how often an idle connection is looked at, and how many looks in a
        // row it must be idle before it is dropped.
        let mut look = tokio::time::interval(SHUTDOWN_LOOK);
        let mut idle_looks = 0u8;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                // A graceful h2 close waits for the client to acknowledge; a client that is
                // idle (or whose runtime is busy) must not hold the shutdown for the full
                // grace period when no request of its is in flight.
                _ = look.tick(), if stopping => {
                    if watched.busy() {
                        idle_looks = 0;
                    } else {
                        idle_looks = idle_looks.saturating_add(1);
                        if idle_looks >= 2 {
                            return;
                        }
                    }
                }
                _ = &mut deadline, if over => return,
            }
        }
    }
}

/// 503 for a connection beyond the limit; `Connection: close` ends it after this answer.
fn refusal() -> Response<axum::body::Body> {
    let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"too many open connections; retry shortly"}]}"#;
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// What a connection has been doing: requests in flight and when it last did something, so
/// the idle timeout never cuts a request that is still being worked on.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` of the last request start or end.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Release);
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestGuard {
            activity: self.clone(),
            started: Instant::now(),
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn last_instant(&self) -> Instant {
        after(
            self.start,
            Duration::from_millis(self.last.load(Ordering::Acquire)),
        )
    }
}

/// `t + d` without the panic `Instant + Duration` has on overflow: a duration past what the
/// clock can hold (a configured "never") becomes one year, still far beyond any request.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(t)
}

struct RequestGuard {
    activity: Arc<Activity>,
    started: Instant,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Requests being served by this process (all connections), for the shutdown report.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How many requests are being served right now, response bodies included.
pub fn requests_in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// The caller's identity, set on a response by the authorization layer for the request log.
#[derive(Clone, Debug)]
pub struct LogIdentity(pub String);

/// One request's line in the log, written when its response body ends (or is abandoned), so
/// that bytes and duration cover the whole transfer.
struct RequestLog {
    method: axum::http::Method,
    /// `metrics::CLASSES` index.
    class: usize,
    path: String,
    status: u16,
    identity: Option<String>,
    peer: SocketAddr,
    start: Instant,
    bytes: u64,
    done: bool,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let identity = match self.identity.as_deref() {
            None => "-",
            Some("") => "anonymous",
            Some(n) => n,
        };
        tracing::info!(
            target: "berth::request",
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            duration_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            identity = %identity,
            client = %self.peer.ip(),
            complete = self.done,
            "request"
        );
        crate::metrics::global().request_done(
            self.class,
            &self.method,
            self.status,
            self.start.elapsed(),
            self.bytes,
        );
    }
}

/// A request body that counts the bytes it delivers (`/metrics`).
struct CountedIn {
    inner: Incoming,
    class: usize,
}

impl http_body::Body for CountedIn {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            let n = u64::try_from(d.len()).unwrap_or(u64::MAX);
            crate::metrics::global().count_bytes_in(self.class, n);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request's in-flight mark when it is done (or dropped).
struct Tracked {
    inner: axum::body::Body,
    log: RequestLog,
    /// Dropped with the body, which ends the request's in-flight mark.
    _guard: RequestGuard,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = u64::try_from(d.len()).unwrap_or(u64::MAX);
                    self.log.bytes = self.log.bytes.saturating_add(n);
                }
                if self.inner.is_end_stream() {
                    self.log.done = true;
                }
            }
            Poll::Ready(None) => self.log.done = true,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned())
}

/// The TCP stream under TLS and HTTP, with the connection's timeouts and its lingering close.
struct Guarded {
    tcp: TcpStream,
    activity: Arc<Activity>,
    idle: Duration,
    send: Duration,
    /// Wakes a read that waits, to check the idle timeout.
    idle_timer: Pin<Box<Sleep>>,
    /// Armed while a write waits for the client to take bytes.
    send_timer: Option<Pin<Box<Sleep>>>,
    linger: Option<Linger>,
    linger_time: Duration,
    linger_bytes: u64,
}

struct Linger {
    until: Pin<Box<Sleep>>,
    /// Ends the linger when the client sends nothing for LINGER_QUIET: a kept-alive client
    /// with nothing left to send (the usual case at shutdown) must not hold us for long.
    quiet: Pin<Box<Sleep>>,
    budget: u64,
}

/// How long a lingering close waits for more bytes from a client that has gone quiet.
const LINGER_QUIET: Duration = Duration::from_secs(2);

impl Guarded {
    fn new(tcp: TcpStream, limits: &Limits, activity: Arc<Activity>) -> Self {
        let now = Instant::now();
        Guarded {
            tcp,
            activity,
            idle: limits.idle_timeout,
            send: limits.send_timeout,
            idle_timer: Box::pin(tokio::time::sleep_until(
                after(now, limits.idle_timeout).into(),
            )),
            send_timer: None,
            linger: None,
            linger_time: limits.linger_time,
            linger_bytes: limits.linger_bytes,
        }
    }

    /// Pending read: has the connection been idle too long? Re-arms the timer otherwise.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.idle_timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            // Idle means no request since the last one ended (or the connection opened): bytes
            // that are not requests (h2 PINGs, a trickled request head) do not keep it open.
            let since = self.activity.last_instant();
            if !self.activity.busy() && now >= after(since, self.idle) {
                return true;
            }
            // Busy (a handler is working, a response is streaming) or active lately.
            let next = if self.activity.busy() {
                after(now, self.idle)
            } else {
                after(since, self.idle)
            };
            self.idle_timer.as_mut().reset(next.into());
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.tcp).poll_read(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                if self.idle_expired(cx) {
                    Poll::Ready(Err(timed_out("idle connection")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl Guarded {
    fn send_stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let send = self.send;
        let timer = self
            .send_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(send)));
        timer.as_mut().poll(cx).is_ready()
    }

    fn wrote<T>(
        &mut self,
        r: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(x) => {
                self.send_timer = None;
                Poll::Ready(x)
            }
            Poll::Pending if self.send_stalled(cx) => {
                Poll::Ready(Err(timed_out("client stopped reading")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.wrote(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.tcp).poll_flush(cx);
        self.wrote(r, cx)
    }

    /// Lingering close: send our FIN, then read and discard what the client is still sending
    /// until it closes too (or the time or byte budget runs out). Closing with unread bytes in
    /// the receive buffer makes the kernel send a reset, which destroys the answer we just sent
    /// before a client that writes its whole body first gets to read it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.linger.is_none() {
            let r = Pin::new(&mut self.tcp).poll_shutdown(cx);
            ready!(self.wrote(r, cx))?;
            let (t, b) = (self.linger_time, self.linger_bytes);
            self.linger = Some(Linger {
                until: Box::pin(tokio::time::sleep(t)),
                quiet: Box::pin(tokio::time::sleep(LINGER_QUIET)),
                budget: b,
            });
        }
        let this = &mut *self;
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 16 << 10];
        loop {
            if linger.until.as_mut().poll(cx).is_ready()
                || linger.quiet.as_mut().poll(cx).is_ready()
                || linger.budget == 0
            {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.tcp).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len() as u64;
                    linger.budget = linger.budget.saturating_sub(n);
                    let next = after(Instant::now(), LINGER_QUIET);
                    linger.quiet.as_mut().reset(next.into());
                }
                // A reset or other error: nothing left to protect.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
