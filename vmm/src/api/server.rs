//! The socket, the accept thread, connection threads and routing.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::http::{self, ReadError, Reader, Request, Response};
use super::model::{HostPmuList, HostPmuUpdate, VcpuList};
use super::{metrics, ApiError, StatsSource, MAX_CONNECTIONS, REQUEST_TIMEOUT};

/// Connection slots kept for clients that send a request at once (`vmm
/// stats`, a scraper): when the other `MAX_CONNECTIONS - RESERVED_CONNECTIONS`
/// are taken, a new connection gets a reserved slot, must send its request
/// within [`RESERVED_IDLE_TIMEOUT`] and is closed after one response. Idle
/// clients holding every ordinary slot thus cannot lock the API out.
pub const RESERVED_CONNECTIONS: usize = 8;
/// How long an ordinary connection may wait between requests (and between
/// two reads of one request) before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// As [`IDLE_TIMEOUT`], for a connection in a reserved slot.
pub const RESERVED_IDLE_TIMEOUT: Duration = Duration::from_millis(250);
/// Refused connections (answered 503) the accept thread keeps until their
/// client closes or sends its request, so that closing never resets a
/// connection with unread data; at most this many, each at most
/// [`REFUSED_LINGER`].
const MAX_REFUSED: usize = 64;
const REFUSED_LINGER: Duration = Duration::from_millis(500);

/// A running API server. Dropping it stops the accept thread, shuts the
/// open connections down and removes the socket.
pub struct ApiServer {
    path: PathBuf,
    /// Device and inode of our socket: remove the path only if it is ours.
    ident: (u64, u64),
    stop: Arc<EventFd>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    source: Arc<dyn StatsSource>,
    stopping: AtomicBool,
    active: AtomicUsize,
    next_id: AtomicU64,
    /// Open connections, to shut them down at stop.
    conns: Mutex<HashMap<u64, UnixStream>>,
    request_timeout: Duration,
}

fn socket_err(path: &Path, e: io::Error) -> ApiError {
    ApiError::Socket(path.display().to_string(), e)
}

/// Removes a stale socket at `path`; refuses anything else.
fn clear_stale(path: &Path) -> Result<(), ApiError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(socket_err(path, e)),
    };
    let shown = path.display().to_string();
    if !meta.file_type().is_socket() {
        return Err(ApiError::SocketPath(
            shown,
            "exists and is not a socket; refusing to replace it".into(),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ApiError::SocketPath(
            shown,
            "in use by a running server".into(),
        )),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            log::info!("api: removing stale socket {shown}");
            std::fs::remove_file(path).map_err(|e| socket_err(path, e))
        }
        Err(e) => Err(ApiError::SocketPath(
            shown,
            format!("exists and cannot be probed ({e}); refusing to replace it"),
        )),
    }
}

/// Where [`bind`] first binds the socket for `path`: `api.sock` in the
/// private directory `.api-PID-SEQ` next to `path`.
pub(super) fn staging_path(path: &Path, seq: u64) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.join(format!(".api-{}-{seq}", std::process::id()))
        .join("api.sock")
}

/// Binds a socket of mode 0600 at `path` without ever replacing what is
/// there and without a moment where anyone else can connect: bind inside a
/// fresh private directory (mode 0700) next to `path`, chmod the socket to
/// 0600, hard-link it to `path` (fails if `path` exists), then remove the
/// temporary name and directory.
fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    clear_stale(path)?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = staging_path(path, SEQ.fetch_add(1, Ordering::Relaxed));
    let private = tmp.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| socket_err(path, e))?;
    let bound = UnixListener::bind(&tmp).and_then(|listener| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::hard_link(&tmp, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&private);
    match bound {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ApiError::SocketPath(
            path.display().to_string(),
            "appeared while binding; refusing to replace it".into(),
        )),
        Err(e) => Err(socket_err(path, e)),
    }
}

impl ApiServer {
    pub(super) fn start(path: &Path, source: Arc<dyn StatsSource>) -> Result<ApiServer, ApiError> {
        ApiServer::start_with(path, source, REQUEST_TIMEOUT)
    }

    /// As [`super::spawn`], with another request timeout (tests).
    pub fn start_with(
        path: &Path,
        source: Arc<dyn StatsSource>,
        request_timeout: Duration,
    ) -> Result<ApiServer, ApiError> {
        let listener = bind(path)?;
        let meta = std::fs::metadata(path).map_err(|e| socket_err(path, e))?;
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| socket_err(path, e))?);
        let shared = Arc::new(Shared {
            source,
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            request_timeout,
        });
        let accept = {
            let (stop, shared) = (stop.clone(), shared.clone());
            std::thread::Builder::new()
                .name("api-accept".into())
                .spawn(move || accept_loop(listener, &stop, &shared))
                .map_err(|e| socket_err(path, e))?
        };
        Ok(ApiServer {
            path: path.to_path_buf(),
            ident: (meta.dev(), meta.ino()),
            stop,
            shared,
            accept: Some(accept),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        let _ = self.stop.write(1);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        if let Ok(conns) = self.shared.conns.lock() {
            for c in conns.values() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.shared.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A connection answered 503, kept until its client is done sending.
struct Refused {
    stream: UnixStream,
    since: Instant,
}

/// Reads and drops what a refused client sent; `true` once it closed.
fn drain(stream: &mut UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    // Bounded: a client that keeps writing is cut off at the linger time.
    for _ in 0..16 {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    false
}

/// Answers 503 without blocking the accept thread: the response fits the
/// empty socket buffer; the socket is then half-closed and kept in
/// `refused` so that the client's request is read before the close (an
/// unread request would turn the close into a reset).
fn refuse(mut stream: UnixStream, refused: &mut Vec<Refused>) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = drain(&mut stream);
    let _ = http::write_response(
        &mut stream,
        &Response::error(503, "too many connections; retry later"),
        true,
    );
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if refused.len() >= MAX_REFUSED {
        refused.remove(0);
    }
    refused.push(Refused {
        stream,
        since: Instant::now(),
    });
}

fn accept_loop(listener: UnixListener, stop: &EventFd, shared: &Arc<Shared>) {
    if let Err(e) = crate::seccomp::enter(crate::seccomp::ThreadKind::ApiAccept) {
        log::error!("api: {e}; not serving");
        return;
    }
    let pollfd = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut refused: Vec<Refused> = Vec::new();
    loop {
        let mut fds = vec![pollfd(listener.as_raw_fd()), pollfd(stop.as_raw_fd())];
        fds.extend(refused.iter().map(|r| pollfd(r.stream.as_raw_fd())));
        let timeout_ms = if refused.is_empty() { -1 } else { 50 };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if shared.stopping.load(Ordering::Acquire) || fds[1].revents != 0 {
            return;
        }
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("api: poll: {}", io::Error::last_os_error());
            return;
        }
        // Refused connections: drop those whose client closed or that
        // lingered long enough.
        let mut i = 0;
        refused.retain_mut(|r| {
            let ready = fds.get(2 + i).is_some_and(|f| f.revents != 0);
            i += 1;
            let done = ready && drain(&mut r.stream);
            !done && r.since.elapsed() < REFUSED_LINGER
        });
        if fds[0].revents == 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => admit(stream, shared, &mut refused),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("api: accept: {e}");
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Starts a connection thread (in an ordinary or a reserved slot), or
/// answers 503 when every slot is taken.
fn admit(stream: UnixStream, shared: &Arc<Shared>, refused: &mut Vec<Refused>) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let before = shared.active.fetch_add(1, Ordering::AcqRel);
    if before >= MAX_CONNECTIONS {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        refuse(stream, refused);
        return;
    }
    let reserved = before >= MAX_CONNECTIONS - RESERVED_CONNECTIONS;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if let (Ok(mut conns), Ok(clone)) = (shared.conns.lock(), stream.try_clone()) {
        conns.insert(id, clone);
    }
    let shared2 = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("api-conn".into())
        .spawn(move || {
            serve(stream, &shared2, reserved);
            if let Ok(mut conns) = shared2.conns.lock() {
                conns.remove(&id);
            }
            shared2.active.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        log::warn!("api: cannot start a connection thread: {e}");
        if let Ok(mut conns) = shared.conns.lock() {
            conns.remove(&id);
        }
        shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection: requests until the client closes, a read waits
/// longer than the idle timeout, or (`reserved`) after one response.
fn serve(mut stream: UnixStream, shared: &Shared, reserved: bool) {
    if let Err(e) = crate::seccomp::enter(crate::seccomp::ThreadKind::ApiConnection) {
        log::error!("api: {e}; closing the connection");
        return;
    }
    let idle = if reserved {
        RESERVED_IDLE_TIMEOUT
    } else {
        IDLE_TIMEOUT
    };
    // Each wait for data is bounded by the idle timeout, the whole
    // request by the request timeout.
    if stream
        .set_read_timeout(Some(idle.min(shared.request_timeout)))
        .is_err()
    {
        return;
    }
    let mut reader = Reader::new(shared.request_timeout);
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match reader.next(&mut stream) {
            Ok(req) => {
                let resp = catch_unwind(AssertUnwindSafe(|| route(shared.source.as_ref(), &req)))
                    .unwrap_or_else(|_| Response::error(500, "internal error"));
                let close = req.close || reserved || shared.stopping.load(Ordering::Acquire);
                if http::write_response(&mut stream, &resp, close).is_err() || close {
                    return;
                }
            }
            Err(ReadError::Closed) => return,
            Err(ReadError::Respond(status, msg)) => {
                let _ = http::write_response(&mut stream, &Response::error(status, &msg), true);
                let _ = stream.flush();
                return;
            }
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(b) => Response::json(200, b),
        Err(e) => Response::error(500, &format!("cannot encode response: {e}")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = Response::error(405, &format!("method not allowed; allowed: {allow}"));
    r.allow = Some(allow);
    r
}

fn from_error(e: &ApiError) -> Response {
    Response::error(e.status(), &e.to_string())
}

/// Answers one request.
pub(crate) fn route(source: &dyn StatsSource, req: &Request) -> Response {
    let segs: Vec<&str> = req.path.split('/').skip(1).collect();
    let get = req.method == "GET";
    match segs.as_slice() {
        ["v1", "vm"] if get => json(&source.vm()),
        ["v1", "vcpus"] if get => {
            let vcpus = source
                .vcpu_ids()
                .into_iter()
                .filter_map(|id| source.vcpu_pmu(id))
                .collect();
            json(&VcpuList { vcpus })
        }
        ["v1", "vcpus", id, "pmu"] if get => match id.parse::<u32>() {
            Ok(id) => match source.vcpu_pmu(id) {
                Some(v) => json(&v),
                None => Response::error(404, &format!("no vCPU {id}")),
            },
            Err(_) => Response::error(400, &format!("`{id}` is not a vCPU id")),
        },
        ["v1", "host-pmus"] if get => json(&HostPmuList {
            host_pmus: source.host_pmus(),
        }),
        ["v1", "host-pmus", name] if get => {
            match source.host_pmus().into_iter().find(|p| p.name == *name) {
                Some(p) => json(&p),
                None => Response::error(404, &format!("no host PMU `{name}`")),
            }
        }
        ["v1", "host-pmus", name] if req.method == "PUT" => put_host_pmu(source, name, &req.body),
        ["v1", "host-pmus", name, "timeline"] if get => match source.timeline(name) {
            Some(t) => json(&t),
            None => Response::error(404, &format!("no host PMU `{name}`")),
        },
        ["v1", "exits"] if get => json(&source.exits()),
        ["metrics"] if get => match metrics::render(source) {
            Ok(text) => Response {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                body: text.into_bytes(),
                allow: None,
            },
            Err(e) => Response::error(500, &format!("cannot encode metrics: {e}")),
        },
        // Known paths, other methods.
        ["v1", "vm"]
        | ["v1", "vcpus"]
        | ["v1", "vcpus", _, "pmu"]
        | ["v1", "host-pmus"]
        | ["v1", "host-pmus", _, "timeline"]
        | ["v1", "exits"]
        | ["metrics"] => method_not_allowed("GET"),
        ["v1", "host-pmus", _] => method_not_allowed("GET, PUT"),
        _ => Response::error(404, &format!("no such path: {}", req.path)),
    }
}

fn put_host_pmu(source: &dyn StatsSource, name: &str, body: &[u8]) -> Response {
    let update: HostPmuUpdate = match serde_json::from_slice(body) {
        Ok(u) => u,
        Err(e) => {
            return Response::error(
                400,
                &format!("body must be {{\"mux_interval_ms\": 1..=10000}}: {e}"),
            )
        }
    };
    if !vpmu::core::host_pmu::MUX_INTERVAL_RANGE_MS.contains(&update.mux_interval_ms) {
        if !source.host_pmus().iter().any(|p| p.name == name) {
            return Response::error(404, &format!("no host PMU `{name}`"));
        }
        return Response::error(
            400,
            &format!(
                "mux_interval_ms {} is not in 1..=10000",
                update.mux_interval_ms
            ),
        );
    }
    match source.set_mux_interval_ms(name, update.mux_interval_ms) {
        Ok(p) => json(&p),
        Err(e) => from_error(&e),
    }
}
