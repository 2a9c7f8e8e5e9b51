//! The host-side statistics API: HTTP/1.1 with JSON bodies over a Unix
//! socket (`vmm run --api-sock PATH`), documented in `resources/openapi.yaml`.
//!
//! | method | path | body |
//! |---|---|---|
//! | GET | `/v1/vm` | [`model::VmInfo`] |
//! | GET | `/v1/vcpus` | [`model::VcpuList`] |
//! | GET | `/v1/vcpus/{id}/pmu` | [`model::VcpuPmu`] |
//! | GET | `/v1/host-pmus` | [`model::HostPmuList`] |
//! | GET, PUT | `/v1/host-pmus/{name}` | [`model::HostPmuInfo`]; PUT takes [`model::HostPmuUpdate`] |
//! | GET | `/v1/host-pmus/{name}/timeline` | [`model::Timeline`] |
//! | GET | `/v1/exits` | [`model::Exits`] |
//! | GET | `/metrics` | OpenMetrics / Prometheus text |
//!
//! The VMM implements [`StatsSource`] over what vCPU threads publish; the
//! server only calls it from its connection threads and never touches a
//! vCPU. One thread accepts; each connection gets a thread (at most
//! [`MAX_CONNECTIONS`]; more are answered 503 and closed without a reset).
//! The last [`server::RESERVED_CONNECTIONS`] slots are kept for clients
//! that send their request at once and get one response, so idle clients
//! cannot lock the API. A connection waiting longer than
//! [`server::IDLE_TIMEOUT`] for data is closed (408 mid-request), and a
//! whole request must arrive within [`REQUEST_TIMEOUT`].

pub mod http;
pub mod metrics;
pub mod model;
pub mod server;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use server::ApiServer;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest time one request may take to arrive.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API reads and changes. Implementations return published
/// snapshots only: no vCPU ioctl, no waiting on a vCPU thread.
pub trait StatsSource: Send + Sync + 'static {
    /// Configuration, state and uptime.
    fn vm(&self) -> model::VmInfo;
    /// vCPU ids, ascending.
    fn vcpu_ids(&self) -> Vec<u32>;
    /// One vCPU's guest-visible PMU state and counter statistics; `None`
    /// for an unknown id.
    fn vcpu_pmu(&self, id: u32) -> Option<model::VcpuPmu>;
    /// Every host PMU (empty when the host side does not multiplex).
    fn host_pmus(&self) -> Vec<model::HostPmuInfo>;
    /// Sets a PMU's rotation interval live. [`ApiError::NotFound`] for an
    /// unknown PMU, [`ApiError::BadRequest`] for a value outside 1..=10000,
    /// [`ApiError::Conflict`] for a PMU that never rotates.
    fn set_mux_interval_ms(&self, pmu: &str, ms: u64) -> Result<model::HostPmuInfo, ApiError>;
    /// Rotation history of one PMU; `None` for an unknown PMU.
    fn timeline(&self, pmu: &str) -> Option<model::Timeline>;
    /// Trapped MSR accesses, PMIs and handling times (see
    /// [`crate::exits::exits_of`]).
    fn exits(&self) -> model::Exits;
}

/// Errors of the API: those of a request carry their HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot apply in the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("API socket {0}: {1}")]
    Socket(String, std::io::Error),
    #[error("API socket {0}: {1}")]
    SocketPath(String, String),
}

impl ApiError {
    /// The HTTP status of a request error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::Unavailable(_) => 503,
            ApiError::Socket(..) | ApiError::SocketPath(..) => 500,
        }
    }
}

/// Binds `path` (mode 0600; a stale socket there is replaced, anything else
/// is refused) and serves `source` until the returned server is dropped,
/// which stops the threads and removes the socket.
pub fn spawn(path: &Path, source: Arc<dyn StatsSource>) -> Result<ApiServer, ApiError> {
    server::ApiServer::start(path, source)
}

/// Longest socket path `bind(2)` takes: `sun_path` less its NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Checks that a socket can be bound at `path`: the path, and the staging
/// name the server binds first (`DIR/.api-PID-SEQ/api.sock`, see
/// `server::bind`), fit `sun_path`. A longer path would be accepted by
/// nothing and reached by no client, so it is refused before the VM starts.
pub fn check_socket_path(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let len = path.as_os_str().as_bytes().len();
    // The server binds a staging name first; sequence numbers up to 3
    // digits: a VM binds one socket.
    let staging = server::staging_path(path, 999).as_os_str().as_bytes().len();
    let need = len.max(staging);
    if need > MAX_SOCKET_PATH {
        return Err(format!(
            "--api-sock {}: a Unix socket path is limited to {MAX_SOCKET_PATH} bytes \
             (sun_path), and binding it needs {need}; choose a shorter path",
            path.display()
        ));
    }
    Ok(())
}

/// A [`StatsSource::set_mux_interval_ms`] helper over the shared host PMUs.
pub fn set_interval(
    pmus: &[Arc<vpmu::core::HostPmu>],
    name: &str,
    ms: u64,
    vcpus: &[vpmu::stats::VcpuStats],
) -> Result<model::HostPmuInfo, ApiError> {
    let pmu = pmus
        .iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ApiError::NotFound(format!("no host PMU `{name}`")))?;
    if pmu.capacity().unbounded {
        return Err(ApiError::Conflict(format!(
            "host PMU `{name}` has unbounded capacity and never rotates: \
             its rotation interval has no effect"
        )));
    }
    pmu.set_interval_ms(ms)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(model::HostPmuInfo::of(pmu, vcpus))
}
