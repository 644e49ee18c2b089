//! The `--help` and `--version` texts. Hidden flags (`--web-socket-url`,
//! `--server-root-url`, `--session-sharing-server-url`, as in the Go worker;
//! our `--lease-ttl` and `--reap-interval`) are left out.

/// `oz-agent-worker <version>`.
pub fn version() -> String {
    format!("oz-agent-worker {}", crate::build_info::this().describe())
}

/// The usage text printed by `--help`.
pub fn help() -> String {
    let version = crate::build_info::this().full_version();
    format!(
        "\
oz-agent-worker {version}
Self-hosted worker for Oz cloud agents: claims tasks routed to this worker
and runs each in a Docker container.

Usage:
  oz-agent-worker [FLAGS]           run the worker
  oz-agent-worker doctor [--format text|json] [FLAGS]
                                    check this host and the configuration, then exit

{FLAGS}
{NOTES}
{ENVIRONMENT}"
    )
}

/// The flags `--help` shows: every visible one, with its default.
const FLAGS: &str = "\
Flags:
  --worker-id ID                  Worker host identifier; required (flag or config
                                  file); must not start with \"warp\"
  --api-key KEY                   API key for authentication; required
                                  [env: WARP_API_KEY]
  --config-file PATH              YAML config file (flags win over it)
  --backend docker                Backend type; this build runs docker only
                                  [default: docker]
  --log-level LEVEL               debug, info, warn or error [default: info]
  --log-format FORMAT             text or json [default: text]
  --no-cleanup                    Keep task containers after they end (debugging)
  -v, --volumes SOURCE:CONTAINER[:OPTIONS] | /CONTAINER
                                  Mount into every task container, as docker
                                  run -v does (host path or volume name; ro, rw,
                                  z, Z, propagation, nocopy, ...); repeatable
  -e, --env KEY=VALUE | KEY       Environment for task containers; KEY alone
                                  copies this worker's value; repeatable
  --max-concurrent-tasks N        Most tasks at once; 0 = unlimited [default: 0]
  --idle-on-complete DURATION     How long the agent stays up after a task for
                                  follow-ups, e.g. 45m, 10m, 0s [default: agent's, 45m]
  --on-shutdown MODE              What SIGTERM/SIGINT does with running tasks:
                                  cancel (report and stop them), drain (wait for
                                  them first) or detach (leave them running for the
                                  next worker process) [default: cancel]
  --drain-timeout DURATION        On shutdown, how long to wait for running tasks
                                  before cancelling them [default: 0s]
  --shutdown-timeout DURATION     Longest a stop takes after any drain; container
                                  stops share it [default: 9s]
  --task-timeout DURATION         Longest a task may run; 0s = no limit [default: 8h]
  --default-image IMAGE           Image for tasks that name none
                                  [default: ubuntu:22.04]
  --sidecar-image IMAGE           Replace the agent sidecar image (a private mirror)
  --image-pull-policy POLICY      Always, IfNotPresent or Never [default: Always]
  --stop-grace DURATION           Time between SIGTERM and SIGKILL when stopping a
                                  task container [default: 10s]
  --prefetch-image IMAGE          Pull IMAGE in the background at start (besides
                                  the default and sidecar images); repeatable
  --image-archives DIR            Load every *.tar / *.tar.gz in DIR (docker save
                                  archives) at start, before the first task
  --sidecar-retention DURATION    Remove sidecar volumes unused this long; 0s =
                                  keep them [default: 168h]
  --image-retention DURATION      Remove task images this worker pulled, unused
                                  this long [default: 0s, keep them]
  -h, --help                      Print this help
  --version                       Print the version
";

/// How values are written, what signals do, and the exit statuses.
const NOTES: &str = "\
Durations are Go durations: 300ms, 10s, 45m, 1h30m, 1.5h.
Signals: SIGTERM/SIGINT stop as --on-shutdown says (a second one within 1s is the
same request, a later one exits at once); SIGQUIT drains; SIGHUP is ignored.
Both --flag VALUE and --flag=VALUE work. Precedence: flag > config file > default.
-v and -e values are split at commas, as the Go worker splits them:
-e A=1,B=2 is two variables; write \\, for a comma inside one entry
(-v '/src:/src:ro\\,z').

Exit status: 0 after a shutdown signal; 80 for a command line that cannot be
parsed (unknown flag, missing or malformed value, no API key); 1 for a
configuration that cannot run (config file, worker id, -e or volume entry,
another backend) and other start-up failures; 130 on a second signal.
";

/// The environment variables the worker reads.
const ENVIRONMENT: &str = "\
Environment:
  WARP_API_KEY   API key, when --api-key is not given
  DOCKER_HOST    Docker daemon to use (unix:///path or tcp://host:port), as the
                 docker CLI reads it (also DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,
                 DOCKER_CONTEXT, DOCKER_CONFIG, DOCKER_API_VERSION)
  RUST_LOG       Log filter in env_logger syntax, for debugging the worker itself
  OTEL_METRICS_EXPORTER  otlp (the default: push to OTEL_EXPORTER_OTLP_ENDPOINT,
                 http://localhost:4318), prometheus, console or none
  OTEL_TRACES_EXPORTER   otlp or console: one trace per task (README: Telemetry)
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_binary_and_crate_version() {
        assert_eq!(
            version(),
            format!("oz-agent-worker {}", crate::build_info::this().describe())
        );
    }

    #[test]
    fn help_lists_every_visible_flag_and_no_hidden_one() {
        let text = help();
        for flag in [
            "--worker-id",
            "--api-key",
            "--config-file",
            "--backend",
            "--log-level",
            "--log-format",
            "--no-cleanup",
            "-v, --volumes",
            "-e, --env",
            "--max-concurrent-tasks",
            "--idle-on-complete",
            "--on-shutdown",
            "--drain-timeout",
            "--shutdown-timeout",
            "SIGHUP",
            "--task-timeout",
            "--default-image",
            "--sidecar-image",
            "--image-pull-policy",
            "--stop-grace",
            "--prefetch-image",
            "--image-archives",
            "--sidecar-retention",
            "--image-retention",
            "-h, --help",
            "--version",
            "doctor",
            "WARP_API_KEY",
            "DOCKER_HOST",
            "RUST_LOG",
        ] {
            assert!(text.contains(flag), "help lacks {flag}");
        }
        for hidden in [
            "--web-socket-url",
            "--server-root-url",
            "--session-sharing",
            "--lease-ttl",
            "--reap-interval",
        ] {
            assert!(!text.contains(hidden), "help shows hidden {hidden}");
        }
        let widest = text.lines().map(|l| l.chars().count()).max();
        assert!(widest <= Some(90), "help line too wide: {widest:?}");
    }
}
