//! The Docker health watch of the `run` command: the `docker-ping` thread,
//! which pings the daemon and looks at its disk, and turns assignments away
//! (through the dispatcher) while Docker does not answer or cannot write.
//! It owns no task: it only flips the dispatcher's two switches, `/readyz`'s
//! Docker time and the `docker_up` gauge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::dispatch::Dispatcher;
use crate::docker::Docker;
use crate::execute::DockerRunner;
use crate::execute::disk::{DiskStep, DiskWatch, Probe};
use crate::metrics::{Health, Metrics};

/// How often Docker is pinged while it answers (readiness, and whether to
/// take tasks at all).
const DOCKER_PING_INTERVAL: Duration = Duration::from_secs(5);
/// How often Docker is pinged while it does not answer.
const DOCKER_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// One look at Docker's disk: reject while a task found it full, probe
/// now and then, take tasks again once it can write.
fn watch_disk(runner: &DockerRunner, dispatcher: &Dispatcher, watch: &mut DiskWatch) {
    let since = runner.disk().full_since();
    match watch.tick(since.is_some(), Instant::now()) {
        DiskStep::Idle => {}
        DiskStep::Reject => {
            dispatcher.set_disk_full(true);
            // What retention may remove goes now, not at its next turn.
            match runner.retention_pass() {
                Ok(r) if r.volumes + r.images > 0 => watch.freed(Instant::now()),
                Ok(_) => {}
                Err(e) => debug!("retention pass on a full disk: {e}"),
            }
        }
        DiskStep::Probe => {
            let probe = runner.probe_disk();
            if let Probe::Short(space) = &probe {
                debug!(
                    "Docker's data root still has only {} MB free of {} MB",
                    space.free >> 20,
                    space.total >> 20
                );
            }
            if let Probe::Failed(e) = &probe {
                debug!("Docker still cannot write: {e}");
            }
            if watch.probed(matches!(probe, Probe::Writable), Instant::now()) {
                runner.disk().clear();
                dispatcher.set_disk_full(false);
                info!(
                    "Docker can write again (its disk was full for {}); taking new tasks again",
                    crate::duration::format(since.map_or(Duration::ZERO, |t| t.elapsed()))
                );
            }
        }
    }
}

/// Pings Docker: `/readyz` learns when it last answered, and while it does
/// not answer — or while its disk is full — the dispatcher rejects new
/// assignments (so the orchestrator routes them to a healthy worker)
/// instead of claiming and failing them.
pub(super) fn spawn(
    docker: Docker,
    runner: Arc<DockerRunner>,
    health: Health,
    dispatcher: Dispatcher,
    metrics: Metrics,
) {
    let _ = std::thread::Builder::new()
        .name("docker-ping".into())
        .spawn(move || {
            let mut answering = true;
            let mut disk = DiskWatch::new(Instant::now());
            loop {
                std::thread::sleep(if answering {
                    DOCKER_PING_INTERVAL
                } else {
                    DOCKER_RETRY_INTERVAL
                });
                watch_disk(&runner, &dispatcher, &mut disk);
                // Any call that got an answer (lease renewals, tasks) is as
                // good as a ping; only an idle client pings.
                if answering && docker.answered_within(DOCKER_PING_INTERVAL) {
                    health.docker_ok();
                    metrics.set_docker_up(true);
                    continue;
                }
                match docker.ping() {
                    Ok(()) => {
                        health.docker_ok();
                        metrics.set_docker_up(true);
                        if !answering {
                            info!("Docker answers again; taking new tasks again");
                            dispatcher.set_docker_available(true);
                            answering = true;
                        }
                    }
                    Err(e) if answering => {
                        metrics.set_docker_up(false);
                        warn!(
                            "Docker did not answer a ping: {e}; rejecting new tasks until it does"
                        );
                        dispatcher.set_docker_available(false);
                        answering = false;
                    }
                    Err(_) => {}
                }
            }
        });
}
