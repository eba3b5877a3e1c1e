# Read-only access for production workloads to their own secrets.
path "secret/data/apps-prod/*" {
  capabilities = ["read"]
}

path "secret/metadata/apps-prod/*" {
  capabilities = ["list"]
}

# Short-lived database credentials issued by the database secrets engine.
path "database/creds/orders-readwrite" {
  capabilities = ["read"]
}
