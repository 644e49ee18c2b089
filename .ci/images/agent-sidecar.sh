#!/bin/sh
# Stub agent for tests: copied (never run) out of oz-test/agent-sidecar and run
# as /agent/entrypoint.sh inside the busybox task container, as PID 1.
#   OZ_TEST_OUT=DIR       write argv (one per line) to DIR/argv, sorted env to DIR/env
#   OZ_TEST_ALLOC_MB=N    hold N MiB in this shell (OOM tests: PID 1 itself is killed)
#   OZ_TEST_SLEEP=S       sleep S seconds; SIGTERM/SIGINT end it at once with 143/130
#   OZ_TEST_UNTIL=FILE    wait until FILE exists (the test creates it through a
#                         bind mount to end the task when it chooses); same signals
#   OZ_TEST_IGNORE_TERM=1 ignore SIGTERM (only SIGKILL ends the wait), like an
#                         agent that takes its whole stop grace
#   OZ_TEST_EXIT=C        exit status (default 0)
#   OZ_TEST_PRINT_ENV=1   print the whole environment to stdout (secret-masking tests)
if [ -n "${OZ_TEST_OUT:-}" ] && [ -d "$OZ_TEST_OUT" ]; then
  : > "$OZ_TEST_OUT/argv"
  for arg in "$@"; do
    printf '%s\n' "$arg" >> "$OZ_TEST_OUT/argv"
  done
  env | sort > "$OZ_TEST_OUT/env"
fi
if [ -n "${OZ_TEST_PRINT_ENV:-}" ]; then
  env | sort
fi
if [ -n "${OZ_TEST_ALLOC_MB:-}" ]; then
  # The command substitution is read into this shell's own memory, so the
  # cgroup limit kills PID 1 and Docker reports OOMKilled with status 137.
  hold=$(head -c "${OZ_TEST_ALLOC_MB}m" /dev/zero | tr '\0' x)
  echo "allocated ${#hold} bytes"
fi
# PID 1 ignores signals it has no handler for, so `exec sleep` would make
# `docker stop` wait for its SIGKILL; a trapped wait ends on SIGTERM.
if [ -n "${OZ_TEST_IGNORE_TERM:-}" ]; then
  trap '' TERM
else
  trap 'exit 143' TERM
fi
trap 'exit 130' INT
if [ -n "${OZ_TEST_SLEEP:-}" ]; then
  sleep "$OZ_TEST_SLEEP" &
  wait $!
fi
if [ -n "${OZ_TEST_UNTIL:-}" ]; then
  while [ ! -e "$OZ_TEST_UNTIL" ]; do
    sleep 0.1 &
    wait $!
  done
fi
exit "${OZ_TEST_EXIT:-0}"
