#!/usr/bin/env bash
# What runs, for the stack of `npm start` (.local) and the one `npm test` leaves (.local/test):
# each process with its pid and port, whether the port answers as the process started here,
# and the last errors of each log. Reads the pid files, stack.env and logs in the local folder.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

show() {
  local dir="$1" title="$2"
  [ -d "$dir" ] || return 0
  (
    export MCP_LOCAL_DIR="$dir"
    # The ports of the last start, else the cluster folders, else the defaults.
    [ -f "$dir/stack.env" ] && set -a && source "$dir/stack.env" && set +a
    if [ -z "${DB_PORT:-}" ]; then
      DB_PORT="$(find "$dir" -maxdepth 1 -name 'pg-[0-9]*' -type d -printf '%f\n' 2>/dev/null | head -n1 | sed 's/^pg-//')"
      export DB_PORT="${DB_PORT:-54322}"
    fi
    source "$ROOT/scripts/lib.sh"
    set +e
    printf '\033[1m%s\033[0m (%s)\n' "$title" "${LOCAL_DIR#$ROOT/}"

    if pg_running; then
      printf '  %-14s running   pid %-8s port %-6s %s\n' postgres "$(head -n1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null)" "$DB_PORT" "${PG_LOG#$ROOT/}"
    elif (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null; then
      printf '  %-14s stopped   port %s is held by another process\n' postgres "$DB_PORT"
    else
      printf '  %-14s stopped   (port %s)\n' postgres "$DB_PORT"
    fi

    for name in pg-net-worker dtma; do
      local log="$LOCAL_DIR/$name.log" state detail=""
      if svc_running "$name"; then state="running   pid $(cat "$(svc_pidfile "$name")")"; else state="stopped"; fi
      if [ "$name" = dtma ] && [ -n "${DTMA_PORT:-}" ]; then
        local answer; answer="$(health_instance_id "http://127.0.0.1:$DTMA_PORT")"
        if [ -n "$answer" ] && [ "$answer" = "${DTMA_INSTANCE_ID:-}" ]; then detail="port $DTMA_PORT answers as this stack's DTMA"
        elif http_ok "http://127.0.0.1:$DTMA_PORT/health"; then detail="port $DTMA_PORT answers, but NOT as this stack's DTMA"
        else detail="port $DTMA_PORT: nothing answers"; fi
      fi
      printf '  %-14s %-18s %s\n' "$name" "$state" "$detail"
    done

    for log in "$PG_LOG" "$LOCAL_DIR/pg-net-worker.log" "$LOCAL_DIR/dtma.log"; do
      [ -f "$log" ] || continue
      local errors; errors="$(grep -aiE 'error|fatal|panic|failed|refused|exited|killed' "$log" | tail -n 3)"
      [ -n "$errors" ] || continue
      printf '  last errors in %s:\n' "${log#$ROOT/}"
      printf '%s\n' "$errors" | cut -c1-200 | sed 's/^/    /'
    done
  )
}

show "${MCP_LOCAL_DIR:-$ROOT/.local}" "npm start"
[ -n "${MCP_LOCAL_DIR:-}" ] || show "$ROOT/.local/test" "npm test"
exit 0
