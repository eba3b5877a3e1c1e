#!/usr/bin/env bash
# Restore drill: back up a namespace with Velero, restore it under another name, check that
# every Deployment, Service, ConfigMap and Secret came back, delete the copy, and record the
# result in the ConfigMap data/dr-drill-results for checkpoint 2B.
#   usage: restore-drill.sh <namespace> <label>
set -euo pipefail
src=${1:?namespace to back up}
label=${2:-milepost}
stamp=$(date -u +%Y%m%d%H%M%S)
backup="drill-$src-$stamp"
restore="drill-restore-$stamp"
scratch="drill-$stamp"

test "$(kubectl -n velero get backupstoragelocations.velero.io default -o jsonpath='{.status.phase}')" = Available

velero backup create "$backup" --include-namespaces "$src" --snapshot-volumes=false \
  --labels "milepost.module=$label" --ttl 72h --wait
phase=$(kubectl -n velero get backups.velero.io "$backup" -o jsonpath='{.status.phase}')
[ "$phase" = Completed ] || { echo "backup $backup ended in phase $phase" >&2; exit 1; }

velero restore create "$restore" --from-backup "$backup" \
  --namespace-mappings "$src:$scratch" --include-resources deployments,services,configmaps,secrets --wait
phase=$(kubectl -n velero get restores.velero.io "$restore" -o jsonpath='{.status.phase}')
[ "$phase" = Completed ] || { echo "restore $restore ended in phase $phase" >&2; exit 1; }

# Nothing restored may run: scale the copies to zero before comparing.
kubectl -n "$scratch" scale deployment --all --replicas=0
inventory() { kubectl -n "$1" get deployments,services,configmaps,secrets -o name | grep -v -e kube-root-ca.crt -e istio-ca-root-cert | sort; }
if ! diff <(inventory "$src") <(inventory "$scratch"); then
  echo "restored objects differ from $src" >&2
  exit 1
fi
kubectl delete namespace "$scratch" --wait=true --timeout=5m

kubectl -n data get configmap dr-drill-results >/dev/null 2>&1 || kubectl -n data create configmap dr-drill-results
kubectl -n data patch configmap dr-drill-results --type merge -p "$(jq -n \
  --arg b "$backup" --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  '{data: {velero_restore: "verified", velero_restore_backup: $b, velero_restore_at: $at}}')"
