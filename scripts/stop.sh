#!/usr/bin/env bash
# Stops what scripts/start.sh started.
source "$(dirname "$0")/lib.sh"
svc_stop gateway
svc_stop console
svc_stop postgrest-standin
svc_stop dtma
svc_stop pg-net-worker
bash "$ROOT/scripts/stack.sh" stop
