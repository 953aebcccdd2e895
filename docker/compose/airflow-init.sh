#!/usr/bin/env bash
# One-shot before the Airflow components start (compose service airflow-init): migrate the metadata database,
# create the registry pool the DAGs' alias-moving tasks share, and write the admin's password for
# SimpleAuthManager. Every step is idempotent, so `docker compose up` may run it on every start.
set -euo pipefail

airflow db migrate
airflow pools set recsys_registry 1 "recsys: registrations and alias moves, one at a time"

# The password file is read by the api-server (same uid) and readable by nobody else; the password itself comes
# from .env (AIRFLOW_ADMIN_PASSWORD) through the environment, never from the command line.
python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
password = os.environ.get("AIRFLOW_ADMIN_PASSWORD", "")
if not password:
    raise SystemExit("error: AIRFLOW_ADMIN_PASSWORD is empty: set it in .env")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump({"admin": password}, f)
print(f"airflow-init: the admin's password is in {path}")
PY
