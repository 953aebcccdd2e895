#!/usr/bin/env bash
# Smoke test of the recommendation service behind a Kubernetes Service (default svc/recommender in $NAMESPACE):
# port-forward to it, wait for /readyz (503 until a model is loaded), then one /predict must return items.
# Used by cd.yml against staging, the blue-green preview and production.
set -euo pipefail
target=${1:-svc/recommender}
namespace=${NAMESPACE:-recsys}
port=${SMOKE_LOCAL_PORT:-13000}

kubectl -n "$namespace" port-forward "$target" "$port:3000" >/dev/null 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null || true' EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 60); do
  if curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
  sleep 5
done
curl -fsS "$base/readyz"
echo
curl -fsS "$base/livez" >/dev/null

answer=$(curl -fsS -X POST "$base/predict" -H 'Content-Type: application/json' -d '{"user_id": 1, "n": 10}')
echo "$answer" | jq -e '(.items | length) == 10 and (.model.version != null)' >/dev/null || {
  echo "unexpected /predict answer: $answer" >&2
  exit 1
}
echo "smoke test of $target passed: $(echo "$answer" | jq -c '.model')"
