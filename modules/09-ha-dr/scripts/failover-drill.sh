#!/usr/bin/env bash
# Failover drill: delete the PostgreSQL primary pod, time until a replica is promoted and
# accepts writes, wait for the cluster to heal, and record the result in the ConfigMap
# data/dr-drill-results for checkpoint 2B.
#   usage: failover-drill.sh <cluster> <namespace>
set -euo pipefail
cluster=${1:?cluster name}
ns=${2:?namespace}
cr="clusters.postgresql.cnpg.io/$cluster"

primary() { kubectl -n "$ns" get "$cr" -o jsonpath='{.status.currentPrimary}'; }

kubectl -n "$ns" wait "$cr" --for=condition=Ready --timeout=10m
old=$(primary)
echo "primary before the drill: $old"

start=$(date +%s)
kubectl -n "$ns" delete pod "$old" --wait=false
new=$old
while [ -z "$new" ] || [ "$new" = "$old" ]; do
  if (( $(date +%s) - start > 600 )); then
    echo "no replica was promoted within 10 minutes" >&2
    exit 1
  fi
  sleep 1
  new=$(primary)
done
until [ "$(kubectl -n "$ns" exec "$new" -c postgres -- psql -tAc 'select not pg_is_in_recovery()' 2>/dev/null)" = t ]; do
  if (( $(date +%s) - start > 600 )); then
    echo "$new was promoted but does not accept writes" >&2
    exit 1
  fi
  sleep 1
done
elapsed=$(( $(date +%s) - start ))
echo "promoted $new; writes accepted after ${elapsed}s"

kubectl -n "$ns" wait "$cr" --for=condition=Ready --timeout=15m

kubectl -n "$ns" get configmap dr-drill-results >/dev/null 2>&1 || kubectl -n "$ns" create configmap dr-drill-results
kubectl -n "$ns" patch configmap dr-drill-results --type merge -p "$(jq -n \
  --arg s "$elapsed" --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg from "$old" --arg to "$new" \
  '{data: {pg_failover_seconds: $s, pg_failover_at: $at, pg_failover_from: $from, pg_failover_to: $to}}')"
