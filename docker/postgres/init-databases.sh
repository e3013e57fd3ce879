#!/usr/bin/env bash
# Runs once, on the first start of an empty Postgres volume: one database each for the Airflow
# metadata and the MLflow tracking/registry store, owned by POSTGRES_USER.
set -euo pipefail

for db in "${AIRFLOW_DB_NAME:?}" "${MLFLOW_DB_NAME:?}"; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v db="$db" -v owner="$POSTGRES_USER" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
done
