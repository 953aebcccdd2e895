#!/usr/bin/env bash
# One-shot before the recommendation service starts (compose service recsys-init, the recsys-pipeline image):
# bring the SQL stores to the code's schema, then, the first time, the pipeline of `make demo` up to a champion:
# fetch, replay, validate, train as of week AS_OF_WEEK (argument 1, default 28), gate (auto policy: a pass
# promotes). Every step is idempotent (a replayed week overwrites its partition, `train --reuse` returns the
# version already registered for the same run key, `gate --once` repeats an earlier outcome), so running it at
# every `docker compose up` costs a few seconds once a champion exists.
set -euo pipefail
as_of_week="${1:-28}"

# The recommender (another uid, group 0) writes its traffic and assignment logs under var/serving: make that
# folder group-writable before anything here could create it with the default umask's 0755. Not chmod on an
# existing one: once the service owns it, this uid may not change it (and need not).
umask 0002
serving="${RECSYS_VAR_DIR:?}/serving"
[ -d "$serving" ] || install -d -m 2775 "$serving"

recsys db migrate
recsys data fetch           # MovieLens-100K from PyPI's recbole wheel the first time (needs PyPI), then cached
recsys data replay --all
recsys validate --all
recsys train --as-of-week "$as_of_week" --reuse
recsys registry gate --once
recsys registry list
