#!/usr/bin/env bash
# PostgreSQL's image runs this once, on an empty data directory (/docker-entrypoint-initdb.d): one role and one
# database per component, each role owning only its own database, so a leaked MLflow password cannot read
# Airflow's metadata or the recsys stores. Passwords come from the environment (.env), never from this file.
# A later change of a password in .env does not reach an initialised volume: ALTER ROLE by hand (docs).
set -euo pipefail

create() {  # create <role> <password> <database>
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=role="$1" --set=password="$2" --set=db="$3" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
}

create airflow "$PG_AIRFLOW_PASSWORD" airflow
create mlflow "$PG_MLFLOW_PASSWORD" mlflow
create recsys "$PG_RECSYS_PASSWORD" recsys
