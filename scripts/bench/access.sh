#!/usr/bin/env bash
# Access-control benchmark (not a test: it always exits 0 once it has measured).
# On a cluster of its own (port 54339, .local/bench), built as the test command builds its
# database, it loads a large dataset set-based (scripts/bench/access-dataset.sql), then measures
# with pgbench over TCP, in the transaction PostgREST wraps around an RPC:
#   validate  validate_agent_mcp_access(agent, server)     scripts/bench/validate.pgbench
#   servers   get_agent_mcp_servers(agent)                  scripts/bench/servers.pgbench
#   lookup    pgbench's primary-key read, same envelope     scripts/bench/lookup.pgbench
#   plain     pgbench -S (the same read, no envelope)
# and prints TPS, average, p50 and p99 latency, the ratios and their targets.
# scripts/bench/README.md says how to read the figures.
usage() {
  cat <<'USAGE'
usage: bash scripts/bench/access.sh [options]
  --keep            reuse the bench cluster and its dataset when they exist (skips the build)
  --duration N      seconds each script is measured (default 20)
  --warmup N        seconds each script runs, unmeasured, before (default 5; 0 skips)
  --clients N       pgbench clients, -c (default 4)
  --threads N       pgbench threads, -j (default 2)
  --orgs N          organizations in the dataset (default 1000; 100 agents and 10 grants per agent each)
  --rounds N        measure the four scripts N times, interleaved, and report each one's median
                    round (default 1; 3 steadies the figures on a machine that others share)
  --build-jobs N    parallel sessions that build the dataset (default: the number of cores)
  --no-stop         leave the bench cluster running at the end (to explain queries by hand)
USAGE
}

DURATION=20 WARMUP=5 CLIENTS=4 THREADS=2 ORGS=1000 ROUNDS=1 KEEP=false STOP=true
BUILD_JOBS="$(nproc 2>/dev/null || echo 2)"
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=true ;;
    --no-stop) STOP=false ;;
    --duration) DURATION="${2:?}"; shift ;;
    --warmup) WARMUP="${2:?}"; shift ;;
    --clients) CLIENTS="${2:?}"; shift ;;
    --threads) THREADS="${2:?}"; shift ;;
    --orgs) ORGS="${2:?}"; shift ;;
    --rounds) ROUNDS="${2:?}"; shift ;;
    --build-jobs) BUILD_JOBS="${2:?}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$WARMUP" =~ ^[0-9]+$ ]] || { usage >&2; exit 2; }
for v in "$DURATION" "$CLIENTS" "$THREADS" "$ORGS" "$ROUNDS" "$BUILD_JOBS"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
done

export DB_PORT="${BENCH_ACCESS_PORT:-54339}"
export MCP_LOCAL_DIR="$(cd "$(dirname "$0")/../.." && pwd)/.local/bench"
# A throwaway cluster sized for the dataset (about 2 GB with indexes and the audit trail):
# shared_buffers keeps all of it in memory so the runs measure CPU, not the disk; the
# build's bulk writes get room (no checkpoint mid-build, big maintenance memory). Durability
# is off: the measured transactions are read-only (nothing to flush at commit either way).
export PG_EXTRA_CONF="shared_buffers = 4GB
effective_cache_size = 16GB
maintenance_work_mem = 1GB
work_mem = 32MB
max_wal_size = 8GB
checkpoint_timeout = 1h
fsync = off
synchronous_commit = off
full_page_writes = off"
source "$(dirname "$0")/../lib.sh"
export PGPASSWORD="$DB_PASSWORD"

BENCH_DIR="$ROOT/scripts/bench"
LOG="$LOCAL_DIR/access.log"
RUN_DIR="$LOCAL_DIR/access-run"
PG_TCP=(-h 127.0.0.1 -p "$DB_PORT" -U postgres)
mkdir -p "$LOCAL_DIR"
# One run at a time: a second one would reset the cluster under the first.
exec 9> "$LOCAL_DIR/access.lock"
flock -n 9 || die "another access benchmark is running (lock: ${LOCAL_DIR#$ROOT/}/access.lock)" "wait for it to finish"
: > "$LOG"

command -v pgbench >/dev/null || die "pgbench is missing" "apt-get install postgresql-client-15"
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL 15 server in $PG_BIN" "run: bash scripts/setup.sh"
[ -x "$ROOT/node_modules/.bin/supabase" ] || die "the Supabase CLI is not installed" "run: bash scripts/setup.sh"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# timed LABEL COMMAND...: runs COMMAND with its output in the log, then prints one line with
# the time it took; on failure shows the end of the log and stops.
timed() {
  local label="$1" t0; shift
  t0="$(now)"
  printf '\n### %s\n' "$label" >> "$LOG"
  # 9>&-: the server a step starts must not inherit (and keep) the run's lock.
  if ! "$@" >> "$LOG" 2>&1 9>&-; then
    tail -n 30 "$LOG" >&2
    die "$label failed" "read $LOG"
  fi
  printf '\033[1m==>\033[0m %-58s %7s s\n' "$label" "$(since "$t0")"
}

dataset() { psql_db -o /dev/null -v orgs="$ORGS" -f "$BENCH_DIR/access-dataset.sql" "$@"; }

# Most of the build is per row: each deployment queues a DTMA request in the outbox, each
# grant runs its audit trigger and five foreign-key checks. So the organizations are split in
# parts, one session per core, each part a disjoint set of organizations (no lock in common).
dataset_parts() {
  local pids=() k failed=0
  for ((k = 0; k < BUILD_JOBS; k++)); do
    dataset -v phase=part -v parts="$BUILD_JOBS" -v part="$k" & pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || failed=1; done
  return "$failed"
}

# No DTMA and no pg_net worker here: the minute jobs (health poll, harvest) would only queue
# requests for 2,000 toolboxes, mark them unresponsive, and run in the middle of a measurement.
pause_cron() { psql_db -c "select cron.alter_job(jobid, active => false) from cron.job" >/dev/null; }

pgbench_init() {
  pgbench -i -s 10 -q "${PG_TCP[@]}" postgres
  psql_db -c "grant select on public.pgbench_accounts to authenticated"
}

build() {
  local t0; t0="$(now)"
  timed "cluster: scripts/stack.sh reset (port $DB_PORT)" bash "$ROOT/scripts/stack.sh" reset
  timed "schema: scripts/db.sh all (compat + supabase db push)" bash "$ROOT/scripts/db.sh" all
  timed "pg_cron jobs paused (no DTMA on this cluster)" pause_cron
  timed "dataset: organizations, users, agents, toolboxes, instances" dataset -v phase=prepare -v parts="$BUILD_JOBS"
  timed "dataset: deployments and grants ($BUILD_JOBS parallel sessions)" dataset_parts
  timed "dataset: bench.pairs and bench.claims" dataset -v phase=finish
  timed "pgbench tables: pgbench -i -s 10" pgbench_init
  timed "vacuum analyze" vacuumdb --analyze --jobs="$BUILD_JOBS" "${PG_TCP[@]}" -d postgres
  timed "checkpoint" psql_db -c checkpoint
  psql_db -c "insert into bench.meta (key, value) values ('schema_hash', '$(schema_hash)')" >/dev/null
  BUILD_SECONDS="$(since "$t0")"
  echo "$BUILD_SECONDS" > "$LOCAL_DIR/access-build-seconds"
  info "build took $BUILD_SECONDS s"
}

# What the database was built from, to tell a --keep run that db/ has changed since.
schema_hash() { cat "$ROOT"/db/compat/*.sql "$ROOT"/db/{schema,functions,policies}/*.sql | md5sum | cut -c1-32; }

dataset_ready() {
  [ "$(psql_db -At -c "select exists (select from bench.meta where key = 'built_at')
                              and to_regclass('public.pgbench_accounts') is not null" 2>/dev/null)" = t ]
}

row_counts() {
  psql_db -P footer=off -o "$LOCAL_DIR/access-rows.txt" <<'SQL'
select 'organizations' as "table", count(*) as "rows", '' as detail from public.organizations
union all select 'auth.users', count(*), '' from auth.users
union all select 'organization_members', count(*),
       (select string_agg(format('%s %s', role, n), ', ' order by role)
          from (select role, count(*) n from public.organization_members group by role) r) from public.organization_members
union all select 'agents', count(*), '' from public.agents
union all select 'account_tool_environments', count(*), format('%s Vault secrets', (select count(*) from vault.secrets))
  from public.account_tool_environments
union all select 'account_tool_instances', count(*),
       (select string_agg(format('%s %s', status, n), ', ' order by n desc)
          from (select status, count(*) n from public.account_tool_instances group by status) s) from public.account_tool_instances
union all select 'agent_mcp_server_access', count(*),
       format('live %s, expired %s, revoked %s; read_only %s, full_access %s, custom %s',
              count(*) filter (where revoked_at is null and (expires_at is null or expires_at > now())),
              count(*) filter (where revoked_at is null and expires_at <= now()),
              count(*) filter (where revoked_at is not null),
              count(*) filter (where permission_scope = 'read_only'),
              count(*) filter (where permission_scope = 'full_access'),
              count(*) filter (where permission_scope = 'custom')) from public.agent_mcp_server_access
union all select 'dtma_requests', count(*),
       (select string_agg(format('%s %s %s', operation, state, n), ', ' order by n desc)
          from (select operation, state, count(*) n from public.dtma_requests group by 1, 2) r) from public.dtma_requests
union all select 'audit_log', count(*), '' from public.audit_log
union all select 'bench.pairs', count(*),
       format('validate answers true for %s%%',
              round(100.0 * count(*) filter (where exists (
                select from public.agent_mcp_server_access g join public.account_tool_instances i on i.id = g.server_instance_id
                 where g.agent_id = p.agent_id and g.server_instance_id = p.server_id and g.revoked_at is null and g.is_active
                   and (g.expires_at is null or g.expires_at > now()) and i.status = 'running')) / count(*), 1))
  from bench.pairs p
union all select 'pgbench_accounts', count(*), 'scale 10' from public.pgbench_accounts;
SQL
}

# measure NAME ROUND ARGS...: one measured pgbench run (after a warm-up in round 1), with one
# log line per transaction. Sets TPS, AVG, P50, P99 and NOTE at [NAME/ROUND].
declare -A TPS AVG P50 P99 NOTE
measure() {
  local name="$1" r="$2" dir="$RUN_DIR/$1/round-$2" rc=0 n k="$1/$2"; shift 2
  mkdir -p "$dir"
  local common=(-n -M prepared -c "$CLIENTS" -j "$THREADS" "${PG_TCP[@]}")
  if [ "$WARMUP" -gt 0 ] && [ "$r" = 1 ]; then
    pgbench "${common[@]}" -T "$WARMUP" "$@" postgres > "$dir/warmup.txt" 2>&1 || true
  fi
  pgbench "${common[@]}" -T "$DURATION" -l --log-prefix="$dir/tx" "$@" postgres > "$dir/pgbench.txt" 2>&1 || rc=$?
  cat "$dir/pgbench.txt" >> "$LOG"
  TPS[$k]="$(sed -n 's/^tps = \([0-9]*\)\.[0-9]* (without initial connection time)$/\1/p' "$dir/pgbench.txt")"
  AVG[$k]="$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$dir/pgbench.txt")"
  # Column 3 of pgbench's per-transaction log is the transaction's latency in microseconds.
  { cat "$dir"/tx.* 2>/dev/null || true; } | awk '{ print $3 }' | sort -n > "$dir/latencies.txt"
  n="$(wc -l < "$dir/latencies.txt")"
  P50[$k]="$(percentile "$dir/latencies.txt" "$n" 50)"
  P99[$k]="$(percentile "$dir/latencies.txt" "$n" 99)"
  NOTE[$k]=""
  [ "$rc" = 0 ] || NOTE[$k]="pgbench exited with $rc: see $dir/pgbench.txt"
  grep -q '^number of failed transactions: 0 ' "$dir/pgbench.txt" || NOTE[$k]="failed transactions: see $dir/pgbench.txt"
  printf '\033[1m==>\033[0m %-22s %10s tps  avg %7s ms  p50 %7s ms  p99 %7s ms  (%s s, %s transactions)%s\n' \
    "$name$([ "$ROUNDS" = 1 ] || echo " ($r/$ROUNDS)")" "${TPS[$k]:-?}" "${AVG[$k]:-?}" "${P50[$k]}" "${P99[$k]}" "$DURATION" "$n" \
    "${NOTE[$k]:+  $(printf '\033[31m%s\033[0m' "${NOTE[$k]}")}"
}
# pick_median NAME: copies the figures of NAME's median round (by TPS) to [NAME].
pick_median() {
  local name="$1" r k
  r="$(for ((k = 1; k <= ROUNDS; k++)); do echo "${TPS[$name/$k]:-0} $k"; done | sort -n | awk -v m="$(( (ROUNDS + 1) / 2 ))" 'NR == m { print $2 }')"
  k="$name/$r"
  TPS[$name]="${TPS[$k]}" AVG[$name]="${AVG[$k]}" P50[$name]="${P50[$k]}" P99[$name]="${P99[$k]}" NOTE[$name]="${NOTE[$k]}"
}
# percentile FILE COUNT P: the nearest-rank percentile (smallest value with P% at or below it), in ms.
percentile() {
  [ "$2" -gt 0 ] || { echo "?"; return; }
  awk -v n="$2" -v p="$3" 'BEGIN { r = int((n * p + 99) / 100); if (r < 1) r = 1 } NR == r { printf "%.3f", $1 / 1000; exit }' "$1"
}
# cpu_busy: how busy all cores are over 2 s (from /proc/stat), in percent.
cpu_busy() {
  local a b
  a=($(sed -n 's/^cpu  //p' /proc/stat)); sleep 2; b=($(sed -n 's/^cpu  //p' /proc/stat))
  awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN { n = split(a, x); split(b, y); for (i = 1; i <= n; i++) t += y[i] - x[i]
    idle = (y[4] - x[4]) + (y[5] - x[5]); printf "%.0f", (t > 0 ? 100 * (t - idle) / t : 0) }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.1f", 100 * a / b; else printf "?" }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "?") print "?"; else if ((op == ">=" && v >= t) || (op == "<" && v < t)) print "PASS"; else print "MISS" }'; }

# ---- build, or reuse with --keep
if $STOP; then trap 'bash "$ROOT/scripts/stack.sh" stop >/dev/null 2>&1 || true' EXIT; fi
started="$(now)"
if $KEEP && [ -f "$PGDATA_DIR/PG_VERSION" ]; then
  timed "cluster: scripts/stack.sh start (--keep)" bash "$ROOT/scripts/stack.sh" start
  if dataset_ready; then
    info "dataset kept: $(psql_db -At -c "select string_agg(value, ', ' order by key desc) from bench.meta where key in ('sizes', 'built_at')")"
    BUILD_SECONDS="$(cat "$LOCAL_DIR/access-build-seconds" 2>/dev/null || echo '?')"
    [ "$(psql_db -At -c "select value from bench.meta where key = 'schema_hash'")" = "$(schema_hash)" ] \
      || info "$(printf '\033[33mwarning:\033[0m')" "db/ changed since this database was built: it measures the SQL of then (run without --keep to rebuild)"
  else
    info "no complete dataset in the kept cluster: building it"
    build
  fi
else
  build
fi
timed "row counts" row_counts
cat "$LOCAL_DIR/access-rows.txt"

# ---- measure
PAIRS="$(psql_db -At -c "select count(*) from bench.pairs")"
rm -rf "$RUN_DIR"
cores="$(nproc 2>/dev/null || echo '?')"
busy="$(cpu_busy)"
info "measuring: $DURATION s per script after a $WARMUP s warm-up, -c $CLIENTS -j $THREADS -M prepared, over TCP;" \
     "$PAIRS (agent, server) pairs; $cores cores, ${busy}% busy before the first run"
awk -v b="$busy" 'BEGIN { exit !(b + 0 > 20) }' \
  && info "$(printf '\033[33mwarning:\033[0m')" "other processes keep the cores ${busy}% busy: the figures will be low and noisy"
for ((round = 1; round <= ROUNDS; round++)); do
  measure validate "$round" -D pairs="$PAIRS" -f "$BENCH_DIR/validate.pgbench"
  measure servers "$round" -D pairs="$PAIRS" -f "$BENCH_DIR/servers.pgbench"
  measure lookup "$round" -D pairs="$PAIRS" -D scale=10 -f "$BENCH_DIR/lookup.pgbench"
  measure plain "$round" -S
done
for name in validate servers lookup plain; do pick_median "$name"; done

# ---- summary
v_ratio="$(ratio "${TPS[validate]}" "${TPS[lookup]}")"
s_ratio="$(ratio "${TPS[servers]}" "${TPS[lookup]}")"
e_ratio="$(ratio "${TPS[lookup]}" "${TPS[plain]}")"
echo
[ "$ROUNDS" = 1 ] || info "each script's median round of $ROUNDS (by TPS):"
echo "| script | what one transaction does | TPS | avg ms | p50 ms | p99 ms |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "${TPS[$1]:-?}" "${AVG[$1]:-?}" "${P50[$1]}" "${P99[$1]}"; }
row validate "envelope + validate_agent_mcp_access"
row servers "envelope + get_agent_mcp_servers"
row lookup "envelope + pgbench primary-key read"
row plain "pgbench -S (primary-key read alone)"
echo
printf '%-56s %7s%%   target >= 50%%   %s\n' "validate TPS / envelope lookup TPS" "$v_ratio" "$(verdict "$v_ratio" '>=' 50)"
printf '%-56s %7s%%   target >= 50%%   %s\n' "get_agent_mcp_servers TPS / envelope lookup TPS" "$s_ratio" "$(verdict "$s_ratio" '>=' 50)"
printf '%-56s %7s%%   (what the envelope leaves of plain -S)\n' "envelope cost: envelope lookup TPS / plain -S TPS" "$e_ratio"
printf '%-56s %7s ms  target < 2 ms    %s\n' "validate p99" "${P99[validate]}" "$(verdict "${P99[validate]}" '<' 2)"
echo
info "build ${BUILD_SECONDS:-?} s; whole run $(since "$started") s; per-transaction logs in ${RUN_DIR#$ROOT/}; build log ${LOG#$ROOT/}"
exit 0
