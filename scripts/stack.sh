#!/usr/bin/env bash
# The project-local PostgreSQL 15 cluster: init | start | stop | status | reset | url.
# Data lives in .local/pg-<port> (ignored by git); DB_PORT picks the cluster (default 54322).
source "$(dirname "$0")/lib.sh"

init_cluster() {
  if [ -f "$PGDATA_DIR/PG_VERSION" ]; then
    info "cluster exists: $PGDATA_DIR"
    return
  fi
  [ -x "$PG_BIN/initdb" ] || die "no PostgreSQL 15 server in $PG_BIN" "run: npm run setup (npm start and npm test run it too)"
  step "creating cluster in $PGDATA_DIR (port $DB_PORT)"
  mkdir -p "$LOCAL_DIR" "$PGDATA_DIR"
  chmod 755 "$LOCAL_DIR"
  [ "$PGDATA_DIR" = "$LOCAL_DIR/pg-$DB_PORT" ] || info "the postgres user cannot reach $ROOT: data in $PGDATA_DIR"
  local pwfile; pwfile="$(mktemp)"
  printf '%s\n' "$DB_PASSWORD" > "$pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDATA_DIR" "$pwfile"; fi
  chmod 700 "$PGDATA_DIR"
  as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null \
    || { rm -f "$pwfile"; die "initdb failed in $PGDATA_DIR" "remove $PGDATA_DIR, then npm start again"; }
  rm -f "$pwfile"
  # The Vault stand-in's root key lives in a file beside the data, never in a table
  # (as pgsodium's server key does on Supabase).
  as_pg sh -c "umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > '$PGDATA_DIR/vault_root.key'"
  as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null <<CONF

# --- mcp control plane (scripts/stack.sh) ---
port = $DB_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 512MB
shared_preload_libraries = 'pg_cron,plpgsql_check'
cron.database_name = '$DB_NAME'
cron.timezone = 'UTC'
# Jobs run in background workers: no connection, no password needed.
cron.use_background_workers = on
max_worker_processes = 16
timezone = 'UTC'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
${PG_EXTRA_CONF:-}
CONF
}

start_cluster() {
  init_cluster
  if pg_running; then
    info "postgres already running on port $DB_PORT"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null; then
    die "port $DB_PORT is taken by another process" "stop it (npm run status shows what runs), or choose another port: DB_PORT=<port> npm start (tests: TEST_DB_PORT=<port> npm test)"
  fi
  step "starting postgres on port $DB_PORT"
  if [ "$(id -u)" = 0 ]; then touch "$PG_LOG"; chown postgres:postgres "$PG_LOG"; fi
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 start >/dev/null \
    || die "postgres did not start" "read $PG_LOG; npm run status shows what runs"
}

stop_cluster() {
  if pg_running; then
    step "stopping postgres on port $DB_PORT"
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
  else
    info "postgres on port $DB_PORT is not running"
  fi
}

case "${1:-}" in
  init) init_cluster ;;
  start) start_cluster ;;
  stop) stop_cluster ;;
  status) if pg_running; then echo "running: $DB_URL"; else echo "stopped ($PGDATA_DIR)"; exit 3; fi ;;
  reset) stop_cluster; step "removing $PGDATA_DIR"; rm -rf "$PGDATA_DIR"; start_cluster ;;
  url) echo "$DB_URL" ;;
  *) echo "usage: $0 init|start|stop|status|reset|url" >&2; exit 2 ;;
esac
