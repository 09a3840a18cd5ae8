#!/usr/bin/env bash
# Runs every test on a fresh database of its own (port 25329 unless TEST_DB_PORT is set), so the
# stack of scripts/start.sh is left alone: set-up, build with `supabase db push`, the lint and
# advisors gates, pgTAP through pg_prove, then vitest against the real pg_net worker and local DTMA.
# Below Linux's ephemeral range (32768-60999): an outgoing connection of the machine can never
# be holding the port when the test cluster starts (the local DTMA's 30029 is below it too).
export DB_PORT="${TEST_DB_PORT:-25329}"
export MCP_LOCAL_DIR="${MCP_LOCAL_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.local/test}"
# A throwaway database: durability is not what these tests measure.
export PG_EXTRA_CONF="fsync = off
synchronous_commit = off
full_page_writes = off"
source "$(dirname "$0")/lib.sh"
started=$(date +%s)

bash "$ROOT/scripts/setup.sh"
step "tsc --noEmit (the SDK, examples, benchmarks, scripts, tests)"
(cd "$ROOT" && npx --no-install tsc --noEmit -p .) || die "type errors" "fix them; npm run typecheck runs only this step"
export DTMA_PORT="${TEST_DTMA_PORT:-30029}" DTMA_TOKEN="test-dtma-token-$RANDOM$RANDOM"

cleanup() {
  svc_stop dtma >/dev/null 2>&1 || true
  svc_stop pg-net-worker >/dev/null 2>&1 || true
  bash "$ROOT/scripts/stack.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash "$ROOT/scripts/stack.sh" reset
bash "$ROOT/scripts/db.sh" all
node "$ROOT/scripts/gates.mjs" "$DB_URL"

step "pgTAP: applying db/tests/_setup.sql, then pg_prove db/tests/*.test.sql"
psql_db -f "$ROOT/db/tests/_setup.sql" >/dev/null
if ! PGPASSWORD="$DB_PASSWORD" PGOPTIONS='--client-min-messages=warning' pg_prove --dbname "$DB_NAME" \
     --host 127.0.0.1 --port "$DB_PORT" --username postgres --timer $(cd "$ROOT" && ls db/tests/*.test.sql | sed "s#^#$ROOT/#"); then
  die "pgTAP failed" "run one file (README, Tests): DB_PORT=$DB_PORT MCP_LOCAL_DIR=${LOCAL_DIR#$ROOT/} bash scripts/stack.sh start, then PGPASSWORD=$DB_PASSWORD pg_prove -h 127.0.0.1 -p $DB_PORT -U postgres -d $DB_NAME db/tests/<file>"
fi

export DATABASE_URL="$DB_URL"
# The local worker harvests DTMA responses as they land (pg_cron 1.4 ticks only by the minute).
svc_start pg-net-worker "grep -q 'sending queued' '$LOCAL_DIR/pg-net-worker.log'" \
  env PG_NET_AFTER_SQL='select public.harvest_dtma_responses()' npx --no-install tsx standins/pg-net/main.ts
rm -f "$LOCAL_DIR/dtma-state.json"
# Ready only when the DTMA answering is the one started here (GET /health echoes its instance id).
instance_id="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
svc_start dtma "[ \"\$(health_instance_id http://127.0.0.1:$DTMA_PORT)\" = '$instance_id' ]" \
  env DTMA_STATE_FILE="$LOCAL_DIR/dtma-state.json" DTMA_INSTANCE_ID="$instance_id" npx --no-install tsx standins/dtma/main.ts
printf 'DB_PORT=%s\nDTMA_PORT=%s\nDTMA_INSTANCE_ID=%s\n' "$DB_PORT" "$DTMA_PORT" "$instance_id" > "$LOCAL_DIR/stack.env"
export DTMA_URL="http://127.0.0.1:$DTMA_PORT"

# The Edge Function entries as Supabase deploys them: each with its import map (its own deno.json,
# else supabase/functions/deno.json), type-checked by real Deno (the npm package's binary); the
# module cache stays in .local/deno across runs.
export DENO_DIR="${DENO_DIR:-$ROOT/.local/deno}"
# Deno does not read the MCP SDK's type declarations through npm: specifiers, so the SDK's handler
# parameters are untyped there (deno.json allows implicit any); tsc checks the same code strictly.
step "deno check supabase/functions/*/index.ts"
for entry in "$ROOT"/supabase/functions/*/index.ts; do
  config="$(dirname "$entry")/deno.json"; [ -f "$config" ] || config="$ROOT/supabase/functions/deno.json"
  (cd "$ROOT" && node_modules/.bin/deno check --quiet --config "$config" "$entry") \
    || die "$entry does not type-check under Deno" "run: DENO_DIR=.local/deno npx deno check --config $config $entry"
done

step "vitest"
(cd "$ROOT" && npx --no-install vitest run "$@") || die "vitest failed" "run only some files (README, Tests): npm test -- <file>..."

step "all tests passed in $(( $(date +%s) - started )) s"
