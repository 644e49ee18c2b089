//! The connection thread's loop: dial (through the proxy the environment
//! chooses), run the session to its end, back off and dial again, until
//! `finish`; and start the loop over after a panic so the thread never ends
//! half-alive.

use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tungstenite::WebSocket;

use super::backoff::{Backoff, JitterSource};
use super::dial::{self, DialError};
use super::session;
use super::url::WsUrl;
use super::{FinishReport, InboundHandler, Settings, Shared};
use crate::net::{NetError, Stream};
use crate::outbox::Outbox;

/// The connection thread's own state.
pub(super) struct Worker {
    pub(super) settings: Settings,
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) outbox: Outbox,
    pub(super) shared: Arc<Shared>,
    pub(super) wake: UnixStream,
}

impl Worker {
    /// [`Worker::run`], started again after a panic (a bug, or input that
    /// reached one): the connection it held is dropped, readiness turns
    /// false, and after a back-off the thread dials again with the outbox
    /// intact, so no status message is lost and the thread never ends
    /// half-alive. The panic hook has logged the panic itself.
    pub(super) fn run_restarting<H: InboundHandler>(&mut self, mut handler: H) -> FinishReport {
        let mut backoff = Backoff::new(self.settings.backoff);
        let mut jitter = JitterSource::new();
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.run(&mut handler))) {
                Ok(report) => return report,
                Err(_) => {
                    if self.shared.connected.swap(false, Ordering::SeqCst) {
                        // The handler is ours to call again: its own state
                        // survives a panic (locks are taken poison-tolerant).
                        let _ =
                            catch_unwind(AssertUnwindSafe(|| handler.on_connection_change(false)));
                    }
                    let delay = backoff.next_delay(jitter.draw());
                    log::error!(
                        "the connection thread stopped on an internal error (see the panic line above); dropping the connection and dialling again in {delay:?}"
                    );
                    self.shared.sleep(delay);
                }
            }
        }
    }

    fn run<H: InboundHandler>(&mut self, handler: &mut H) -> FinishReport {
        let url = self.settings.url.with_worker_id(&self.settings.worker_id);
        let mut backoff = Backoff::new(self.settings.backoff);
        let mut jitter = JitterSource::new();
        loop {
            if let Some(deadline) = self.shared.finish_deadline()
                && (self.outbox.is_empty() || Instant::now() >= deadline)
            {
                return self.report(false);
            }
            let mut ws = match self.connect(&url) {
                Ok(ws) => ws,
                Err((level, e)) => {
                    let delay = backoff.next_delay(jitter.draw());
                    log::log!(
                        level,
                        "could not connect to {url}: {e}; retrying in {delay:?}"
                    );
                    handler.on_dial_failed();
                    self.shared.sleep(delay);
                    continue;
                }
            };
            backoff.reset();
            log::info!("connected to {url}");
            match self.serve(&mut ws, handler) {
                session::Ended::Finished { closed_cleanly } => {
                    log::info!("connection closed");
                    return self.report(closed_cleanly);
                }
                session::Ended::Lost(loss) => {
                    let delay = backoff.next_delay(jitter.draw());
                    log::warn!("connection lost: {loss}; reconnecting in {delay:?}");
                    self.shared.sleep(delay);
                }
            }
        }
    }

    /// One dial, through the proxy the environment chooses, leaving the
    /// socket non-blocking for the session. A failure comes with the level
    /// to log it at: an unusable proxy or a refused key needs the operator,
    /// anything else may pass by itself.
    fn connect(&self, url: &WsUrl) -> Result<WebSocket<Stream>, (log::Level, DialError)> {
        let proxy = match self.settings.proxy.proxy_for(&url.peer()) {
            Some(Ok(p)) => Some(p),
            Some(Err(error)) => {
                let e = NetError::Proxy {
                    proxy: "(HTTPS_PROXY/HTTP_PROXY/ALL_PROXY)".into(),
                    error,
                };
                return Err((log::Level::Error, DialError::Net(e)));
            }
            None => None,
        };
        match &proxy {
            Some(p) => log::info!("connecting to {url} through proxy {p}"),
            None => log::info!("connecting to {url}"),
        }
        let params = dial::DialParams {
            url,
            api_key: &self.settings.api_key,
            proxy: proxy.as_ref(),
            tls: &self.tls,
            timeout: self.settings.dial_timeout,
        };
        dial::dial(&params)
            .and_then(|ws| {
                ws.get_ref()
                    .tcp()
                    .set_nonblocking(true)
                    .map(|_| ws)
                    .map_err(|source| {
                        DialError::Net(NetError::Connect {
                            target: url.authority(),
                            source,
                        })
                    })
            })
            .map_err(|e| {
                let level = if matches!(e.status(), Some(401 | 403)) {
                    log::Level::Error
                } else {
                    log::Level::Warn
                };
                (level, e)
            })
    }

    /// Runs one connection to its end, with readiness (and the handler)
    /// told it is up for exactly that long.
    fn serve<H: InboundHandler>(
        &mut self,
        ws: &mut WebSocket<Stream>,
        handler: &mut H,
    ) -> session::Ended {
        let timing = session::Timing {
            ping_interval: self.settings.ping_interval,
            dead_after: self.settings.dead_after,
            write_timeout: self.settings.write_timeout,
        };
        self.shared.connected.store(true, Ordering::SeqCst);
        handler.on_connection_change(true);
        let ended = session::run(
            ws,
            &self.outbox,
            handler,
            &self.shared,
            &mut self.wake,
            timing,
        );
        self.shared.connected.store(false, Ordering::SeqCst);
        handler.on_connection_change(false);
        ended
    }

    fn report(&self, closed_cleanly: bool) -> FinishReport {
        FinishReport {
            unacknowledged: self.outbox.len(),
            closed_cleanly,
            thread_exited: true,
        }
    }
}
