#!/usr/bin/env bash
# The many-machine shape on one machine: a Prefect server on PostgreSQL, workers on the
# `exports` process work pool, API replicas, S3 storage. Each worker and replica runs in
# a working directory of its own with an `env` file holding what that host would need,
# and starts from that file alone (env -i), as a separate host would.
#
#   deployments/cluster.sh up     # start, print the URLs, run until Ctrl-C or SIGTERM
#   deployments/cluster.sh down   # stop a cluster started by `up` elsewhere
#
# Needs EXPORTFLOW_DATABASE_URL: a PostgreSQL server with pg_trgm, whose role may create
# the `<db>_prefect` database. S3: EXPORTFLOW_STORAGE_URL=s3://… and the EXPORTFLOW_S3_*
# settings, or none of them and the script starts SeaweedFS (`weed mini`) itself. Every
# other EXPORTFLOW_* variable set here is handed to every host. See deployments/README.md.
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
STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-10}
S3_PORT=${CLUSTER_S3_PORT:-18333}
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

# `host NAME [VAR=VALUE…]`: a working directory for one host; its env file holds the
# common settings, its own PREFECT_HOME and the VARs.
host() {
  local dir=$DIR/$1 pair
  shift
  mkdir -p "$dir/prefect"
  {
    cat "$DIR/common.env"
    for pair in "PREFECT_HOME=$dir/prefect" "$@"; do
      printf 'export %s=%q\n' "${pair%%=*}" "${pair#*=}"
    done
  } >"$dir/env"
}

# `start NAME CMD…`: CMD in NAME's directory, in its own session (its pid is the group
# id), from its env file alone; its output goes to logs/NAME.log.
start() {
  local name=$1
  shift
  # shellcheck disable=SC2016 # expanded by the inner shell, from its arguments
  setsid env -i PATH="$BIN:/usr/bin:/bin" HOME="$DIR/$name" bash -c \
    'cd "$1" && . ./env && shift && exec "$@"' _ "$DIR/$name" "$@" \
    </dev/null >"$DIR/logs/$name.log" 2>&1 &
  disown
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
  local name=$1 pid=$2 family began=$SECONDS how=stopped
  family=$(descendants "$pid")
  kill -TERM -- "-$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS - began >= STOP_TIMEOUT)); then
      how="killed (no exit within $STOP_TIMEOUT s of SIGTERM)"
      # Frozen first, so that no flow run it starts meanwhile escapes the list.
      kill -STOP -- "-$pid" 2>/dev/null || true
      family="$family $(descendants "$pid")"
      kill -KILL -- "-$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  # What it left behind, flow runs in their own sessions included.
  # shellcheck disable=SC2086 # one pid per word
  [[ -z $family ]] || kill -KILL $family 2>/dev/null || true
  say "  $how $name ($((SECONDS - began)) s)"
}

stop_all() {
  trap '' INT TERM
  if [[ -f $DIR/pids ]]; then
    say "stopping ..."
    tac "$DIR/pids" | while read -r name pid; do stop_one "$name" "$pid"; done
    rm -f "$DIR/pids"
  fi
  rm -f "$DIR/cluster.pid"
}

# `secrets NAME…`: EXPORTFLOW_NAME, unless given, from secrets made once per cluster folder.
secrets() {
  local file=$DIR/secrets.env
  if [[ ! -f $file ]]; then
    (umask 077 && "$PY" -c 'import secrets
for name in ("SECRET_KEY", "JWT_SECRET", "S3_SECRET_KEY"):
    print(f"{name}={secrets.token_hex(24)}")' >"$file")
  fi
  local name value
  while IFS='=' read -r name value; do
    [[ " $* " == *" $name "* && -z $(printenv "EXPORTFLOW_$name") ]] ||
      continue
    export "EXPORTFLOW_$name=$value"
  done <"$file"
}

# With no S3 settings: SeaweedFS on loopback, ports from CLUSTER_S3_PORT (S3 itself) up.
start_s3() {
  host s3
  printf '{"identities": [{"name": "exportflow", "actions": ["Admin", "Read", "Write", "List",
    "Tagging"], "credentials": [{"accessKey": "%s", "secretKey": "%s"}]}]}\n' \
    "$EXPORTFLOW_S3_ACCESS_KEY" "$EXPORTFLOW_S3_SECRET_KEY" >"$DIR/s3/s3.json"
  local p=$S3_PORT
  # weed's gRPC ports are its HTTP ports + 10000 (the admin's must be).
  start s3 weed -logtostderr "-config_dir=$DIR/s3" mini "-dir=$DIR/s3" "-ip=$HOST" \
    "-ip.bind=$HOST" "-s3.config=$DIR/s3/s3.json" "-s3.port=$p" "-master.port=$((p + 1))" \
    "-volume.port=$((p + 2))" "-filer.port=$((p + 3))" "-admin.port=$((p + 4))" \
    -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    "-filer.localSocket=$DIR/s3/filer.sock" "-s3.localSocket=$DIR/s3/s3.sock"
  until_ready s3 "$PY" -c 'from flows.control.settings import Settings
from flows.control.storage import Storage
Storage.from_settings(Settings()).fs.mkdirs("exportflow", exist_ok=True)'
}

up() {
  [[ -n ${EXPORTFLOW_DATABASE_URL:-} ]] || die "set EXPORTFLOW_DATABASE_URL (PostgreSQL)"
  [[ -z ${EXPORTFLOW_STORAGE_URL:-} || $EXPORTFLOW_STORAGE_URL == s3://* ]] ||
    die "EXPORTFLOW_STORAGE_URL must be s3://bucket/prefix: every host shares the files"
  [[ ! -f $DIR/cluster.pid ]] || ! kill -0 "$(cat "$DIR/cluster.pid")" 2>/dev/null ||
    die "a cluster runs from $DIR already (pid $(cat "$DIR/cluster.pid")); \`down\` stops it"
  local ports=("$PREFECT_PORT" "${API_PORTS[@]}") port n
  if [[ -z ${EXPORTFLOW_STORAGE_URL:-} ]]; then
    for n in 0 1 2 3 4; do ports+=($((S3_PORT + n)) $((S3_PORT + n + 10000))); done
  fi
  for port in "${ports[@]}"; do
    port_free "$port" || die "$HOST:$port is in use"
  done
  export EXPORTFLOW_ENV=${EXPORTFLOW_ENV:-production}
  umask 077 # the env files hold the secrets
  mkdir -p "$DIR/logs"
  rm -f "$DIR/pids"
  say $$ >"$DIR/cluster.pid"
  trap 'stop_all; exit 0' INT TERM
  trap 'stop_all' EXIT
  local began=$SECONDS prefect_db
  cd "$ROOT"
  secrets SECRET_KEY JWT_SECRET
  local own_s3=${EXPORTFLOW_STORAGE_URL:-yes}
  if [[ $own_s3 == yes ]]; then
    secrets S3_SECRET_KEY
    export EXPORTFLOW_S3_ENDPOINT_URL=http://$HOST:$S3_PORT EXPORTFLOW_S3_ACCESS_KEY=exportflow
    export EXPORTFLOW_STORAGE_URL=s3://exportflow/exports EXPORTFLOW_S3_REGION=us-east-1
  fi
  write_common_env
  [[ $own_s3 != yes ]] || start_s3
  "$PY" -m flows.tools.cli migrate
  # Prefect's own database beside exportflow's; a cluster never runs Prefect on SQLite.
  prefect_db=$("$PY" -c 'import sys
from pathlib import Path
from flows.control.settings import Settings
from flows.tools.prefect_db import prefect_database
url, which = prefect_database(Settings(), sys.argv[1], Path(sys.argv[2]))
sys.exit(f"Prefect needs PostgreSQL here: {which}") if url.startswith("sqlite") else print(url)' \
    "$EXPORTFLOW_DATABASE_URL" "$DIR")

  host prefect-server "PREFECT_API_DATABASE_CONNECTION_URL=$prefect_db" \
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS=1"
  start prefect-server prefect server start --host "$HOST" --port "$PREFECT_PORT" --analytics-off
  until_ready "prefect-server" http_ok "$PREFECT_API/health"

  # Once per server, from the checkout: the pool, then the deployments of prefect.yaml.
  host deploy "EXPORTFLOW_CODE_DIR=$ROOT"
  # shellcheck disable=SC2016 # expanded by the inner shell, from its arguments
  (cd "$ROOT" && env -i PATH="$BIN:/usr/bin:/bin" HOME="$DIR/deploy" bash -c '. "$1/env" &&
    { prefect work-pool inspect exports || prefect work-pool create exports --type process; } &&
    prefect --no-prompt deploy --all &&
    python -m flows.orchestration.automations' _ "$DIR/deploy") >"$DIR/logs/deploy.log" 2>&1 ||
    die "prefect deploy failed; see $DIR/logs/deploy.log"
  say "  deployed export, cleanup and reconcile to the exports pool, and the automations"

  local n name
  for n in $(seq 1 "$WORKERS"); do
    name=worker-$n
    host "$name" "EXPORTFLOW_CODE_DIR=$ROOT" "EXPORTFLOW_DATA_DIR=$DIR/$name/data" \
      PREFECT_WORKER_QUERY_SECONDS=1 PREFECT_LOGGING_EXTRA_LOGGERS=exportflow
    start "$name" prefect worker start --pool exports --name "$name" --limit "$WORKER_LIMIT"
  done
  for n in $(seq 1 "$WORKERS"); do until_ready "worker-$n" worker_online "worker-$n"; done

  for n in "${!API_PORTS[@]}"; do
    name=api-$((n + 1))
    host "$name" "EXPORTFLOW_DATA_DIR=$DIR/$name/data"
    start "$name" uvicorn api.main:app --app-dir "$ROOT" --host "$HOST" --port "${API_PORTS[n]}"
  done
  for n in "${!API_PORTS[@]}"; do
    until_ready "api-$((n + 1))" http_ok "http://$HOST:${API_PORTS[n]}/readyz"
  done

  say "Prefect UI:  http://$HOST:$PREFECT_PORT"
  for n in "${!API_PORTS[@]}"; do say "API $((n + 1)):       http://$HOST:${API_PORTS[n]}"; done
  say "Storage:     $EXPORTFLOW_STORAGE_URL at $EXPORTFLOW_S3_ENDPOINT_URL"
  say "Logs:        $DIR/logs; each host's settings in $DIR/<host>/env"
  say "A token:     (. $DIR/api-1/env && $BIN/exportflow token --user demo --perm products:read)"
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
