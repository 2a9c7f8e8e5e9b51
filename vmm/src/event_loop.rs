//! The main thread's event loop (event-manager): what stops the VM (a stop
//! request from a vCPU, SIGINT/SIGTERM, `--timeout`) and the periodic ticks
//! that ask vCPUs to publish their state for readers.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::shared::{StopReason, VmShared};

/// Watches the stop sources and drives the publication tick.
struct Control<'a> {
    shared: Arc<VmShared>,
    signal_evt: &'a EventFd,
    take_signal: fn() -> i32,
    timeout: Option<TimerFd>,
    publish: Option<(TimerFd, Box<dyn FnMut() + 'a>)>,
    outcome: Option<StopReason>,
}

impl MutEventSubscriber for Control<'_> {
    fn init(&mut self, ops: &mut EventOps) {
        let mut fds = vec![
            self.shared.stop_evt().as_raw_fd(),
            self.signal_evt.as_raw_fd(),
        ];
        fds.extend(self.timeout.as_ref().map(|t| t.as_raw_fd()));
        fds.extend(self.publish.as_ref().map(|(t, _)| t.as_raw_fd()));
        for fd in fds {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                self.outcome = Some(StopReason::VmmError(format!(
                    "event loop: watching fd {fd}: {e:?}"
                )));
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.shared.stop_evt().as_raw_fd() {
            self.outcome = Some(self.shared.stop_reason());
        } else if fd == self.signal_evt.as_raw_fd() {
            // Drain the eventfd so it does not stay readable.
            let _ = self.signal_evt.read();
            let sig = (self.take_signal)();
            if sig != 0 {
                self.outcome = Some(StopReason::Signal(sig));
            }
        } else if self.timeout.as_ref().is_some_and(|t| t.as_raw_fd() == fd) {
            self.outcome = Some(StopReason::Timeout);
        } else if let Some((timer, tick)) =
            self.publish.as_mut().filter(|(t, _)| t.as_raw_fd() == fd)
        {
            // Consume the expirations; a late tick just publishes once.
            if let Err(e) = timer.wait() {
                log::warn!("publication timer: {e}");
            }
            tick();
        }
    }
}

/// Why the event loop could not run.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    #[error("timeout timer: {0}")]
    TimeoutTimer(std::io::Error),
    #[error("publication timer: {0}")]
    PublishTimer(std::io::Error),
    #[error(transparent)]
    EventManager(#[from] event_manager::Error),
}

fn periodic(every: Duration, first: Duration) -> std::io::Result<TimerFd> {
    let mut t = TimerFd::new()?;
    t.reset(first, Some(every))?;
    Ok(t)
}

/// Runs the event loop until something stops the VM, and says what.
/// `publish` is called every `publish.0` while the VM runs.
pub fn wait_for_stop<'a>(
    shared: &Arc<VmShared>,
    signal_evt: &'a EventFd,
    take_signal: fn() -> i32,
    timeout: Option<Duration>,
    publish: Option<(Duration, Box<dyn FnMut() + 'a>)>,
) -> StopReason {
    match run(shared, signal_evt, take_signal, timeout, publish) {
        Ok(r) => r,
        Err(e) => StopReason::VmmError(format!("event loop: {e}")),
    }
}

fn run<'a>(
    shared: &Arc<VmShared>,
    signal_evt: &'a EventFd,
    take_signal: fn() -> i32,
    timeout: Option<Duration>,
    publish: Option<(Duration, Box<dyn FnMut() + 'a>)>,
) -> Result<StopReason, EventLoopError> {
    let timeout = timeout
        .map(|t| {
            let mut fd = TimerFd::new()?;
            fd.reset(t, None)?;
            Ok::<_, std::io::Error>(fd)
        })
        .transpose()
        .map_err(EventLoopError::TimeoutTimer)?;
    let publish = publish
        .map(|(every, f)| periodic(every, every).map(|t| (t, f)))
        .transpose()
        .map_err(EventLoopError::PublishTimer)?;
    let control = Control {
        shared: Arc::clone(shared),
        signal_evt,
        take_signal,
        timeout,
        publish,
        outcome: None,
    };
    let mut em = EventManager::<Control>::new()?;
    let id = em.add_subscriber(control);
    loop {
        // A stop requested before the loop started was recorded already.
        if shared.stopping() {
            return Ok(shared.stop_reason());
        }
        match em.run() {
            Ok(_) => {}
            Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(e.into()),
        }
        let control = em.subscriber_mut(id)?;
        if let Some(r) = control.outcome.take() {
            return Ok(r);
        }
    }
}
