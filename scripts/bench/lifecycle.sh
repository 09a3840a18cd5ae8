#!/usr/bin/env bash
# Lifecycle benchmark (not a test) on a cluster of its own (port 54349): builds it as the test
# command does, then runs scripts/bench/lifecycle.ts (its own pg_net worker and DTMA in-process).
# Arguments go to lifecycle.ts: --real-instances 4 --real-cycles 3 --stub-instances 200 --stub-cycles 3 --synthetic 5000
export DB_PORT="${BENCH_LIFECYCLE_PORT:-54349}"
export MCP_LOCAL_DIR="$(cd "$(dirname "$0")/../.." && pwd)/.local/bench-lifecycle"
export PG_EXTRA_CONF="fsync = off
synchronous_commit = off"
source "$(dirname "$0")/../lib.sh"
bash "$ROOT/scripts/setup.sh" >/dev/null
bash "$ROOT/scripts/stack.sh" reset >/dev/null
bash "$ROOT/scripts/db.sh" all >/dev/null 2>&1 || die "building the benchmark database failed" "run: DB_PORT=$DB_PORT bash scripts/db.sh all"
# The minute cron jobs would harvest too; this run times its own harvests.
psql_db -c "select cron.unschedule(jobid) from cron.job" >/dev/null
trap 'bash "$ROOT/scripts/stack.sh" stop >/dev/null' EXIT
cd "$ROOT" && DATABASE_URL="$DB_URL" npx --no-install tsx scripts/bench/lifecycle.ts "$@"
