#!/usr/bin/env bash
# The many-machine shape on one machine: a Prefect server on PostgreSQL, workers on the
# `exports` process work pool, API replicas, S3 storage. Each worker and replica runs in
# a working directory of its own with an `env` file holding what that host would need,
# and starts from that file alone (env -i), as a separate host would.
#
#   deployments/cluster.sh up     # start, print the URLs, run until Ctrl-C or SIGTERM
#   deployments/cluster.sh down   # stop a cluster started by `up` elsewhere
#
# Needs EXPORTFLOW_DATABASE_URL (a PostgreSQL server with pg_trgm, whose role may create
# the `<db>_prefect` database) and S3 settings (EXPORTFLOW_STORAGE_URL=s3://…,
# EXPORTFLOW_S3_ENDPOINT_URL, _ACCESS_KEY, _SECRET_KEY, _REGION). Every other
# EXPORTFLOW_* variable set here is handed to every host. See deployments/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${CLUSTER_DIR:-$ROOT/.exportflow/cluster}
BIN=${CLUSTER_BIN:-$ROOT/.venv/bin}
HOST=${CLUSTER_HOST:-127.0.0.1}
PREFECT_PORT=${CLUSTER_PREFECT_PORT:-4200}
read -r -a API_PORTS <<<"${CLUSTER_API_PORTS:-8001 8002}"
WORKERS=${CLUSTER_WORKERS:-2}
WORKER_LIMIT=${CLUSTER_WORKER_LIMIT:-2}
TIMEOUT=${CLUSTER_TIMEOUT:-180}
STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-30}
PY=$BIN/python
PREFECT_API=http://$HOST:$PREFECT_PORT/api

say() { printf '%s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 2
}

# `exported NAME…`: `export NAME=value` lines, quoted so that `.` reads them back.
exported() {
  local name
  for name in "$@"; do printf 'export %s=%q\n' "$name" "${!name}"; done
}

# What every host shares: the database, the storage, the secrets, the Prefect API.
write_common_env() {
  local names
  mapfile -t names < <(compgen -e | grep '^EXPORTFLOW_' || true)
  {
    exported "${names[@]}"
    printf 'export PREFECT_API_URL=%q\n' "$PREFECT_API"
    # Only because this checkout may not be the one the virtualenv has installed.
    printf 'export PYTHONPATH=%q\n' "$ROOT"
    printf 'export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PYTHONUNBUFFERED=1\n'
  } >"$DIR/common.env"
}

# `host NAME`: a working directory for one host, its env file = the common one + lines.
host() {
  local dir=$DIR/$1
  shift
  mkdir -p "$dir/prefect"
  { cat "$DIR/common.env"; printf '%s\n' "export PREFECT_HOME=$dir/prefect" "$@"; } >"$dir/env"
}

# `start NAME CMD…`: CMD in NAME's directory, in its own session (its pid is the group
# id), from its env file alone; its output goes to logs/NAME.log.
start() {
  local name=$1
  shift
  setsid env -i PATH="$BIN:/usr/bin:/bin" HOME="$DIR/$name" bash -c \
    'cd "$1" && . ./env && shift && exec "$@"' _ "$DIR/$name" "$@" \
    </dev/null >"$DIR/logs/$name.log" 2>&1 &
  say "$name $!" >>"$DIR/pids"
  say "started $name (pid $!, log $DIR/logs/$name.log)"
}

# `until_ready WHAT CHECK…`: run CHECK every half second until it succeeds, or fail.
until_ready() {
  local what=$1 began=$SECONDS
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - began < TIMEOUT)) || die "$what did not come up within $TIMEOUT s"
    sleep 0.5
  done
  say "  $what is up ($((SECONDS - began)) s)"
}

http_ok() { curl -fsS -o /dev/null --max-time 3 "$1"; }

worker_online() {
  curl -fsS --max-time 3 -X POST -H 'Content-Type: application/json' -d '{}' \
    "$PREFECT_API/work_pools/exports/workers/filter" | grep -q "\"name\":\"$1\""
}

port_free() { ! (: <"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Every process below `pid` (flow runs start in sessions of their own, not in its group).
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    say "$child"
    descendants "$child"
  done
}

stop_one() {
  local name=$1 pid=$2 family waited=0
  family=$(descendants "$pid")
  kill -TERM -- "-$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 2)); do
    sleep 0.5
    waited=$((waited + 1))
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  # shellcheck disable=SC2086 # one pid per word
  [[ -z $family ]] || kill -KILL $family 2>/dev/null || true
  say "  stopped $name"
}

stop_all() {
  trap '' INT TERM
  say "stopping ..."
  if [[ -f $DIR/pids ]]; then
    tac "$DIR/pids" | while read -r name pid; do stop_one "$name" "$pid"; done
    rm -f "$DIR/pids"
  fi
  rm -f "$DIR/cluster.pid"
}

up() {
  [[ -n ${EXPORTFLOW_DATABASE_URL:-} ]] || die "set EXPORTFLOW_DATABASE_URL (PostgreSQL)"
  [[ ${EXPORTFLOW_STORAGE_URL:-} == s3://* ]] || die "set EXPORTFLOW_STORAGE_URL=s3://bucket/prefix and the EXPORTFLOW_S3_* settings"
  [[ ! -f $DIR/cluster.pid ]] || ! kill -0 "$(cat "$DIR/cluster.pid")" 2>/dev/null ||
    die "a cluster already runs from $DIR (pid $(cat "$DIR/cluster.pid")): deployments/cluster.sh down"
  local port
  for port in "$PREFECT_PORT" "${API_PORTS[@]}"; do
    port_free "$port" || die "$HOST:$port is in use"
  done
  export EXPORTFLOW_ENV=${EXPORTFLOW_ENV:-production}
  mkdir -p "$DIR/logs"
  rm -f "$DIR/pids"
  say $$ >"$DIR/cluster.pid"
  trap 'stop_all; exit 0' INT TERM
  trap 'stop_all' EXIT
  local began=$SECONDS prefect_db
  cd "$ROOT"
  "$PY" -m flows.tools.cli migrate
  # Prefect's own database beside exportflow's; a cluster never runs Prefect on SQLite.
  prefect_db=$("$PY" -c 'import sys
from pathlib import Path
from flows.control.settings import Settings
from flows.tools.prefect_db import prefect_database
url, which = prefect_database(Settings(), sys.argv[1], Path(sys.argv[2]))
sys.exit(f"Prefect needs PostgreSQL here: {which}") if url.startswith("sqlite") else print(url)' \
    "$EXPORTFLOW_DATABASE_URL" "$DIR")
  write_common_env

  host prefect-server "export PREFECT_API_DATABASE_CONNECTION_URL=$(printf %q "$prefect_db")"
  start prefect-server prefect server start --host "$HOST" --port "$PREFECT_PORT" --analytics-off
  until_ready "prefect-server" http_ok "$PREFECT_API/health"

  # Once per server, from the checkout: the pool, then the deployments of prefect.yaml.
  host deploy "export EXPORTFLOW_CODE_DIR=$ROOT"
  (cd "$ROOT" && env -i PATH="$BIN:/usr/bin:/bin" HOME="$DIR/deploy" bash -c \
    '. "$1/env" && { prefect work-pool inspect exports || prefect work-pool create exports --type process; } &&
     prefect --no-prompt deploy --all' _ "$DIR/deploy") >"$DIR/logs/deploy.log" 2>&1 ||
    die "prefect deploy failed; see $DIR/logs/deploy.log"
  say "  deployed export and cleanup to the exports pool"

  local n name
  for n in $(seq 1 "$WORKERS"); do
    name=worker-$n
    host "$name" "export EXPORTFLOW_CODE_DIR=$ROOT" "export EXPORTFLOW_DATA_DIR=$DIR/$name/data" \
      "export PREFECT_WORKER_QUERY_SECONDS=1 PREFECT_LOGGING_EXTRA_LOGGERS=exportflow"
    start "$name" prefect worker start --pool exports --name "$name" --limit "$WORKER_LIMIT"
  done
  for n in $(seq 1 "$WORKERS"); do until_ready "worker-$n" worker_online "worker-$n"; done

  for n in "${!API_PORTS[@]}"; do
    name=api-$((n + 1))
    host "$name" "export EXPORTFLOW_DATA_DIR=$DIR/$name/data"
    start "$name" uvicorn api.main:app --app-dir "$ROOT" --host "$HOST" --port "${API_PORTS[n]}"
  done
  for n in "${!API_PORTS[@]}"; do
    until_ready "api-$((n + 1))" http_ok "http://$HOST:${API_PORTS[n]}/readyz"
  done

  say "Prefect UI:  http://$HOST:$PREFECT_PORT"
  for n in "${!API_PORTS[@]}"; do say "API $((n + 1)):       http://$HOST:${API_PORTS[n]}"; done
  say "Logs:        $DIR/logs"
  say "cluster is up in $((SECONDS - began)) s; Ctrl-C or SIGTERM stops it"
  local -A gone=()
  while true; do
    while read -r name pid; do
      if [[ -z ${gone[$name]:-} ]] && ! kill -0 "$pid" 2>/dev/null; then
        gone[$name]=1
        say "$name (pid $pid) has exited; the rest keeps running"
      fi
    done <"$DIR/pids"
    sleep 1 &
    wait $! || true
  done
}

down() {
  [[ -f $DIR/cluster.pid ]] || die "no cluster runs from $DIR"
  local pid
  pid=$(cat "$DIR/cluster.pid")
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
  say "stopped the cluster in $DIR"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
