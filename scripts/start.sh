#!/usr/bin/env bash
# Starts the local system: PostgreSQL 15 with the schema on port 54322, the pg_net worker, the
# local DTMA on port 30000, and a demo organization a newcomer can follow (scripts/demo.sql).
# A second run reuses what is there; `npm run stop` stops it all.
source "$(dirname "$0")/lib.sh"
export DTMA_PORT="${DTMA_PORT:-30000}"
token_file="$LOCAL_DIR/dtma-token"

bash "$ROOT/scripts/setup.sh"
# The local database follows db/: when the SQL changed since it was built, it is rebuilt
# (migrations are not edited in place on a real project; locally the demo data is recreated).
hash_file="$LOCAL_DIR/pg-$DB_PORT.schema-hash"
node "$ROOT/scripts/build-migrations.mjs" >/dev/null
schema_hash="$(cat "$ROOT"/db/compat/*.sql "$ROOT"/supabase/migrations/*.sql | md5sum | cut -c1-32)"
if [ -f "$PGDATA_DIR/PG_VERSION" ] && [ "$(cat "$hash_file" 2>/dev/null)" != "$schema_hash" ]; then
  step "db/ changed since the local database was built: rebuilding it"
  svc_stop pg-net-worker
  svc_stop gateway
  # The DTMA's servers belonged to the old database: start it afresh too.
  svc_stop dtma
  rm -f "$LOCAL_DIR/dtma-state.json"
  bash "$ROOT/scripts/stack.sh" reset
else
  bash "$ROOT/scripts/stack.sh" start
fi
bash "$ROOT/scripts/db.sh" all
echo "$schema_hash" > "$hash_file"

export DATABASE_URL="$DB_URL"
# A ready check reads only what the worker logged since this start: the log is appended to, and an
# old "sending queued" line proves nothing about the process started now.
worker_log="$LOCAL_DIR/pg-net-worker.log"
worker_log_from=$(( $(stat -c %s "$worker_log" 2>/dev/null || echo 0) + 1 ))
# The local worker harvests DTMA responses as they land (pg_cron 1.4 ticks only by the minute).
svc_start pg-net-worker "tail -c +$worker_log_from '$worker_log' | grep -q 'sending queued'" \
  env PG_NET_AFTER_SQL='select public.harvest_dtma_responses()' npx --no-install tsx standins/pg-net/main.ts
[ -s "$token_file" ] || (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$token_file")

# The DTMA answers GET /health with the instance id it was started with: only that answer proves
# that the process on the port is the one started here (another one would refuse our token).
dtma_url="http://127.0.0.1:$DTMA_PORT"
instance_file="$LOCAL_DIR/dtma-instance-id"
if ! svc_running dtma; then
  if http_ok "$dtma_url/health"; then
    die "port $DTMA_PORT is taken by another process" \
      "stop it (npm run status shows what runs), or choose another port: DTMA_PORT=<port> npm start"
  fi
  od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$instance_file"
fi
instance_id="$(cat "$instance_file" 2>/dev/null || true)"
svc_start dtma "[ \"\$(health_instance_id $dtma_url)\" = '$instance_id' ]" \
  env DTMA_TOKEN="$(cat "$token_file")" DTMA_STATE_FILE="$LOCAL_DIR/dtma-state.json" DTMA_INSTANCE_ID="$instance_id" \
  npx --no-install tsx standins/dtma/main.ts
step "demo data (scripts/demo.sql)"
psql_db -v dtma_url="$dtma_url" -v dtma_token="$(cat "$token_file")" -f "$ROOT/scripts/demo.sql" >/dev/null

# Up means: each process started here runs, and the ports answer as those processes.
step "checking that what answers is what was started"
pg_running || die "postgres is not running" "read $PG_LOG; npm run status shows what runs"
[ "$(psql_db -At -c "select count(*) from public.organizations where slug = 'demo'")" = 1 ] \
  || die "the database on port $DB_PORT has no demo organization" "npm run status shows what runs; npm run stop, then npm start"
svc_running pg-net-worker || die "the pg_net worker exited" "read $worker_log; npm run status shows what runs"
svc_running dtma || die "the local DTMA exited" "read $LOCAL_DIR/dtma.log; npm run status shows what runs"
[ -n "$instance_id" ] && [ "$(health_instance_id "$dtma_url")" = "$instance_id" ] \
  || die "port $DTMA_PORT does not answer as the DTMA started here" \
    "stop what holds it (npm run status shows what runs), then npm start, or choose another port: DTMA_PORT=<port> npm start"
cat > "$LOCAL_DIR/stack.env" <<ENV
DB_PORT=$DB_PORT
DTMA_PORT=$DTMA_PORT
DTMA_INSTANCE_ID=$instance_id
ENV

# The agent MCP gateway (scripts/gateway), and an API key for the demo agent: a key from an
# earlier database (or a revoked one) is replaced.
export GATEWAY_PORT="${GATEWAY_PORT:-8080}"
key_file="$LOCAL_DIR/demo-agent-key"
if [ ! -s "$key_file" ] || [ "$(echo "select exists (select from public.agent_api_keys where key_sha256 = extensions.digest(:'key', 'sha256') and revoked_at is null)" | psql_db -At -v key="$(cat "$key_file")")" != t ]; then
  (umask 077; psql_db -At -f "$ROOT/scripts/gateway/demo-key.sql" | grep '^mcpk_' > "$key_file")
fi
svc_start gateway "http_ok http://127.0.0.1:$GATEWAY_PORT/.well-known/oauth-protected-resource" \
  env GATEWAY_PORT="$GATEWAY_PORT" npx --no-install tsx scripts/gateway/main.ts
# The admin console (console/) behind the PostgREST stand-in (standins/postgrest), both local-only.
export POSTGREST_PORT="${POSTGREST_PORT:-54321}" CONSOLE_PORT="${CONSOLE_PORT:-54323}" CONSOLE_OUT_DIR="$LOCAL_DIR/console-dist"
[ -s "$LOCAL_DIR/jwt-secret" ] || (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$LOCAL_DIR/jwt-secret")
export JWT_SECRET="$(cat "$LOCAL_DIR/jwt-secret")" SUPABASE_URL="http://127.0.0.1:$POSTGREST_PORT"
svc_start postgrest-standin "http_ok $SUPABASE_URL/auth/v1/health" npx --no-install tsx standins/postgrest/server.ts
console_hash="$( (cat "$LOCAL_DIR/jwt-secret"; echo "$SUPABASE_URL"; find "$ROOT/console" "$ROOT/client/src" -type f -not -path '*/e2e/*' | sort | xargs cat) | md5sum | cut -c1-32)"
if [ "$(cat "$LOCAL_DIR/console-dist.hash" 2>/dev/null)" != "$console_hash" ]; then
  svc_stop console
  step "building the console (console/, Vite)"
  (cd "$ROOT" && npx --no-install tsx console/serve.ts build) && echo "$console_hash" > "$LOCAL_DIR/console-dist.hash"
fi
svc_start console "http_ok http://127.0.0.1:$CONSOLE_PORT/" npx --no-install tsx console/serve.ts serve
console_link="$(cd "$ROOT" && npx --no-install tsx console/local-session.ts "http://127.0.0.1:$CONSOLE_PORT" demo@example.com 12)"

cat <<TXT

The stack is up.
  database     $DB_URL
  psql         psql '$DB_URL'
  pg_net       worker log: ${LOCAL_DIR#$ROOT/}/pg-net-worker.log
  local DTMA   $dtma_url (token in ${token_file#$ROOT/}; log: ${LOCAL_DIR#$ROOT/}/dtma.log)
  status       npm run status
  MCP gateway  http://127.0.0.1:$GATEWAY_PORT/mcp (demo agent's API key in ${key_file#$ROOT/}; log: ${LOCAL_DIR#$ROOT/}/gateway.log)
  API          $SUPABASE_URL (the PostgREST stand-in; log: ${LOCAL_DIR#$ROOT/}/postgrest-standin.log)
  console      http://127.0.0.1:$CONSOLE_PORT, signed in as demo@example.com for 12 hours (local-only link):
               $console_link
  stop         npm run stop
TXT
