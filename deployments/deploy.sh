#!/usr/bin/env bash
# Create the work pool and the download concurrency limit, then deploy every
# flow of deployments/prefect.yaml.  Idempotent: run it again after an upgrade.
#
#   CANFAR_CATALOGUE_POOL=catalogue-local \
#   CANFAR_CATALOGUE_ARCHIVE=cadc:CFHT \
#   CANFAR_CATALOGUE_DESTINATION=vos:myspace/catalogues \
#   bash deployments/deploy.sh
#
# Exposures can run on another pool than the batch, e.g. HTCondor on the cloud:
#   CANFAR_CATALOGUE_EXPOSURE_POOL=catalogue-htcondor CANFAR_CATALOGUE_EXPOSURE_POOL_TYPE=htcondor
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export CANFAR_CATALOGUE_POOL="${CANFAR_CATALOGUE_POOL:-catalogue-local}"
export CANFAR_CATALOGUE_ARCHIVE="${CANFAR_CATALOGUE_ARCHIVE:-cadc:CFHT}"
: "${CANFAR_CATALOGUE_DESTINATION:?set CANFAR_CATALOGUE_DESTINATION to file:///... or vos:<space>/<path>}"
pool_type="${CANFAR_CATALOGUE_POOL_TYPE:-process}"
export CANFAR_CATALOGUE_EXPOSURE_POOL="${CANFAR_CATALOGUE_EXPOSURE_POOL:-$CANFAR_CATALOGUE_POOL}"
exposure_pool_type="${CANFAR_CATALOGUE_EXPOSURE_POOL_TYPE:-$pool_type}"
# the provisioning deployment's parameters (its schedule stays inactive until you resume it)
export CANFAR_CATALOGUE_OWNER="${CANFAR_CATALOGUE_OWNER:-${USER:-}}"
for name in OS_PROJECT OS_KEYPAIR OS_NETWORK CENTRAL_MANAGER POOL_TOKEN_FILE; do
  var="CANFAR_CATALOGUE_$name"
  export "$var=${!var:-}"
done
prefect="${PREFECT:-prefect}"

# Run a step quietly; if it fails, show what it said and stop.
step() {
  local output
  if ! output=$("$@" 2>&1); then
    echo "deploy.sh: this step failed: $*" >&2
    echo "$output" >&2
    exit 1
  fi
}

read -r limit slots < <(python - <<'PY'
from canfar_catalogue import config
d = config.settings()["download"]
print(d["concurrency_limit"], d["concurrency_slots"])
PY
)

for pool in "$CANFAR_CATALOGUE_POOL:$pool_type" "$CANFAR_CATALOGUE_EXPOSURE_POOL:$exposure_pool_type"; do
  if ! "$prefect" work-pool inspect "${pool%%:*}" >/dev/null 2>&1; then
    step "$prefect" work-pool create "${pool%%:*}" --type "${pool##*:}"
  fi
  if [ "${pool##*:}" = process ]; then
    step python -m canfar_catalogue.worker.process_pool "${pool%%:*}"
  fi
done
# Two at once by default: while one measures on every core, the other starts, downloads and waits for its
# turn at the cores (science/turns.py), then its CCDs follow the first one's at once (bench/bench_batch.py).
slots_exposures="${CANFAR_CATALOGUE_EXPOSURE_SLOTS:-2}"
if "$prefect" work-queue inspect exposures --pool "$CANFAR_CATALOGUE_EXPOSURE_POOL" >/dev/null 2>&1; then
  step "$prefect" work-queue set-concurrency-limit exposures "$slots_exposures" --pool "$CANFAR_CATALOGUE_EXPOSURE_POOL"
else
  step "$prefect" work-queue create exposures --pool "$CANFAR_CATALOGUE_EXPOSURE_POOL" --limit "$slots_exposures"
fi
if "$prefect" global-concurrency-limit inspect "$limit" >/dev/null 2>&1; then
  step "$prefect" global-concurrency-limit update "$limit" --limit "$slots"
else
  step "$prefect" global-concurrency-limit create "$limit" --limit "$slots"
fi
cd "$here/.."
step "$prefect" --no-prompt deploy --prefect-file "$here/prefect.yaml" --all
echo "deployed to work pool $CANFAR_CATALOGUE_POOL ($pool_type), exposures on $CANFAR_CATALOGUE_EXPOSURE_POOL ($exposure_pool_type): $slots_exposures exposure(s) at once, $slots download(s) at once ($limit)"
# A worker asks for new runs every PREFECT_WORKER_QUERY_SECONDS (Prefect's default: 10 s), and an exposure
# waits up to that long for a freed slot: at 10 s a batch of 8 took 1.81x the tutorial's time, at 1 s 1.51x
# (bench/RESULTS.md), and each question costs the server about 30 ms of CPU.  So both workers keep Prefect's
# timer and also ask whenever the server announces a new run or a freed slot (worker/announcements.py): the
# htcondor worker by itself, Prefect's process worker when started by worker/process_worker.py.
worker_command() {
  if [ "$2" = process ]; then
    echo "  python -m canfar_catalogue.worker.process_worker --pool $1 &"
  else
    echo "  prefect worker start --pool $1 --type $2 &"
  fi
}
echo "start the worker(s); each asks for runs when the server announces one:"
worker_command "$CANFAR_CATALOGUE_POOL" "$pool_type"
if [ "$CANFAR_CATALOGUE_EXPOSURE_POOL" != "$CANFAR_CATALOGUE_POOL" ]; then
  worker_command "$CANFAR_CATALOGUE_EXPOSURE_POOL" "$exposure_pool_type"
fi
