#!/usr/bin/env bash
# Builds the database of a running cluster: compat | push | all.
#   compat  applies db/compat (Supabase's platform stand-ins) where the real thing is absent
#   push    builds supabase/migrations from db/ and applies them with the real Supabase CLI
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

apply_compat() {
  for f in db/compat/*.sql; do
    local probe
    probe="$(sed -n 's/^-- compat-when: //p' "$f" | head -n1)"
    [ -n "$probe" ] || die "$f has no '-- compat-when: <query>' line" "add one that is true when the platform lacks what it provides"
    if [ "$(psql_db -At -c "$probe")" = t ]; then
      step "compat: applying $f"
      psql_db -1 -f "$f" >/dev/null || die "applying $f failed" "read the error above"
    else
      info "compat: $f not needed (already present)"
    fi
  done
}

push_migrations() {
  node scripts/build-migrations.mjs
  step "supabase db push --remote=<local url>"
  npx --no-install supabase db push --remote="$DB_URL" --yes --skip-vault \
    || die "supabase db push failed" "read the CLI's message above; the SQL lives in db/"
}

# The local stack's toolboxes are its own DTMA (and the tests' stubs) on 127.0.0.1, over http:
# the platform's URL policy allows them here, and only here (never in a migration).
allow_local_toolboxes() {
  psql_db -c "insert into private.toolbox_url_rules (verdict, network, allow_http, reason)
              select 'allow', '127.0.0.1/32', true, 'the local stack: its own DTMA on loopback'
               where not exists (select from private.toolbox_url_rules where verdict = 'allow' and network = '127.0.0.1/32')" >/dev/null
}

case "${1:-all}" in
  compat) apply_compat ;;
  push) push_migrations ;;
  all) apply_compat; push_migrations; allow_local_toolboxes ;;
  *) echo "usage: $0 compat|push|all" >&2; exit 2 ;;
esac
