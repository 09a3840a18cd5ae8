# Shared settings and helpers for the stack scripts. Sourced, never run.
# Every value can be overridden from the environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="${MCP_LOCAL_DIR:-$ROOT/.local}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
DB_PORT="${DB_PORT:-54322}"
DB_NAME="${DB_NAME:-postgres}"
DB_PASSWORD="${DB_PASSWORD:-postgres}"
PGDATA_DIR="$LOCAL_DIR/pg-$DB_PORT"
PG_LOG="$LOCAL_DIR/pg-$DB_PORT.log"
# When run as root from a folder the postgres OS user cannot reach (a parent without o+x),
# the cluster lives under /var/lib/postgresql instead, one folder per checkout and port.
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$ROOT" 2>/dev/null; then
  PGDATA_DIR="/var/lib/postgresql/mcp-control-plane/$(printf '%s' "$LOCAL_DIR" | md5sum | cut -c1-12)/pg-$DB_PORT"
  PG_LOG="$PGDATA_DIR.log"
fi
DB_URL="postgresql://postgres:${DB_PASSWORD}@127.0.0.1:${DB_PORT}/${DB_NAME}?sslmode=disable"
export PGCONNECT_TIMEOUT=5

step() { printf '\033[1m==>\033[0m %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
  printf '\033[31merror:\033[0m %s\n' "$1" >&2
  [ $# -gt 1 ] && printf '  fix: %s\n' "$2" >&2
  exit 1
}

# Postgres refuses to run as root: run its server binaries as the postgres OS user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_db() { psql "$DB_URL" -v ON_ERROR_STOP=1 -X -q "$@"; }

http_ok() { node -e "fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))" "$1"; }
# The instanceId a DTMA's GET /health answers with (empty when none answers): tells the DTMA this
# checkout started from another process that holds the port.
health_instance_id() {
  node -e "fetch(process.argv[1]).then(r => r.json()).then(b => console.log(b.instanceId ?? ''), () => console.log(''))" "$1/health"
}

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; }

# Background services (pg_net worker, local DTMA): one pid file and one log each in .local.
svc_pidfile() { echo "$LOCAL_DIR/$1.pid"; }
svc_running() { local f; f="$(svc_pidfile "$1")"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }
# svc_start NAME READY_CHECK_CMD COMMAND... : starts COMMAND unless running, waits for READY_CHECK_CMD.
svc_start() {
  local name="$1" ready="$2"; shift 2
  mkdir -p "$LOCAL_DIR"
  if svc_running "$name"; then info "$name already running (pid $(cat "$(svc_pidfile "$name")"))"; return; fi
  step "starting $name (log: ${LOCAL_DIR#$ROOT/}/$name.log)"
  (cd "$ROOT" && exec setsid "$@" >>"$LOCAL_DIR/$name.log" 2>&1 < /dev/null) &
  echo $! > "$(svc_pidfile "$name")"
  for _ in $(seq 1 100); do
    if eval "$ready" >/dev/null 2>&1; then return; fi
    svc_running "$name" || { tail -n 20 "$LOCAL_DIR/$name.log" >&2; die "$name exited at start" "read $LOCAL_DIR/$name.log; npm run status shows what runs"; }
    sleep 0.2
  done
  die "$name did not become ready in 20 s" "read $LOCAL_DIR/$name.log; npm run status shows what runs"
}
svc_stop() {
  local f; f="$(svc_pidfile "$1")"
  if svc_running "$1"; then
    step "stopping $1"
    kill -TERM -- "-$(cat "$f")" 2>/dev/null || kill -TERM "$(cat "$f")" 2>/dev/null || true
    for _ in $(seq 1 50); do svc_running "$1" || break; sleep 0.1; done
    svc_running "$1" && kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
  fi
  rm -f "$f"
}
