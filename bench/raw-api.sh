#!/usr/bin/env bash
# The baselines oz-bench compares the worker with. Each mode prints one
# number on stdout and leaves nothing behind.
#
#   task IMAGE SIDECAR VOLUME LABEL NAME
#       One task the way the worker runs it, one curl per Engine API call, in
#       the worker's order: inspect the task image and the sidecar image,
#       inspect the sidecar volume, create (the worker's body: same command,
#       env, bind of VOLUME at /agent:ro, working dir), HEAD archive (musl
#       probe, a 404 is the normal answer), inspect, start, wait, delete.
#       Prints the wall time in ms. Fails unless the container exited 0.
#   parallel N P IMAGE SIDECAR VOLUME LABEL
#       N such tasks, P at a time (xargs -P). Prints the wall time in s.
#   copy IMAGE LABEL
#       A sidecar image's filesystem into a new volume the docker CLI way:
#       volume create, create a source and a target container, `docker export
#       SRC | docker cp - DST:/fill`, remove both. Prints the wall time in ms.
#
# LABEL is KEY=VALUE; every container and volume made here carries it.
set -euo pipefail
sock=${OZ_BENCH_DOCKER_SOCK:-/var/run/docker.sock}
api=http://docker/v1.41

c() { curl -sS --unix-socket "$sock" "$@"; }
elapsed_ms() { # START_US
  local t=${EPOCHREALTIME/./}
  local d=$((t - $1))
  printf '%d.%03d\n' $((d / 1000)) $((d % 1000))
}
# docker.io/ prefix as the worker sends it for short names.
qualify() { case $1 in */*.*/* | *.*/* | localhost/*) echo "$1" ;; *) echo "docker.io/$1" ;; esac; }

task() { # IMAGE SIDECAR VOLUME LABEL NAME
  local image sidecar volume=$3 key=${4%%=*} value=${4#*=} name=$5 id body status
  image=$(qualify "$1")
  sidecar=$(qualify "$2")
  body=$(printf '{"Cmd":["/agent/entrypoint.sh","agent","run","--share","team:edit","--task-id","%s","--sandboxed","--server-root-url","https://app.warp.dev"],"Env":["TASK_ID=%s","GIT_TERMINAL_PROMPT=0","GH_PROMPT_DISABLED=1","WARP_SERVER_ROOT_URL=https://app.warp.dev"],"HostConfig":{"Binds":["%s:/agent:ro"]},"Image":"%s","Labels":{"%s":"%s"},"WorkingDir":"/workspace"}' \
    "$name" "$name" "$volume" "$image" "$key" "$value")
  c -f -o /dev/null "$api/images/$image/json"
  c -f -o /dev/null "$api/images/$sidecar/json"
  c -f -o /dev/null "$api/volumes/$volume"
  id=$(c -f -X POST -H 'Content-Type: application/json' -d "$body" "$api/containers/create?name=$name")
  id=${id#*\"Id\":\"}
  id=${id%%\"*}
  # From here on the container exists: remove it whatever fails.
  if ! {
    c -o /dev/null -I "$api/containers/$id/archive?path=%2Flib%2Fld-musl-x86_64.so.1" &&
      c -f -o /dev/null "$api/containers/$id/json" &&
      c -f -X POST "$api/containers/$id/start" &&
      status=$(c -f -X POST "$api/containers/$id/wait?condition=not-running")
  }; then
    c -X DELETE "$api/containers/$id?force=1&v=1" || true
    return 1
  fi
  c -f -X DELETE "$api/containers/$id?force=1&v=1"
  case $status in
    *'"StatusCode":0'*) ;;
    *) echo "container $name ended with $status" >&2; return 1 ;;
  esac
}

mode=${1:-}
shift || true
case $mode in
  task)
    start=${EPOCHREALTIME/./}
    task "$@"
    elapsed_ms "$start"
    ;;
  parallel)
    n=$1 p=$2
    shift 2
    start=${EPOCHREALTIME/./}
    seq "$n" | xargs -P "$p" -I{} bash "$0" task1 "$@" "oz-bench-par-$$-{}"
    t=${EPOCHREALTIME/./}
    d=$((t - start))
    printf '%d.%06d\n' $((d / 1000000)) $((d % 1000000))
    ;;
  # 255 makes xargs stop launching more: one failure fails the batch.
  task1) task "$@" || exit 255 ;;
  copy)
    image=$1 label=$2
    vol=oz-bench-copy-$$
    start=${EPOCHREALTIME/./}
    docker volume create --label "$label" "$vol" >/dev/null
    src=$(docker create --label "$label" "$image" true)
    dst=$(docker create --label "$label" -v "$vol:/fill" "$image" true)
    docker export "$src" | docker cp - "$dst:/fill"
    docker rm -f "$src" "$dst" >/dev/null
    elapsed_ms "$start"
    docker volume rm -f "$vol" >/dev/null
    ;;
  *)
    echo "usage: raw-api.sh task|parallel|copy ... (see the header)" >&2
    exit 2
    ;;
esac
