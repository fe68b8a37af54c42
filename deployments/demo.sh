#!/usr/bin/env bash
# The embedded default, end to end, on this machine (run by `make demo`):
# a local Prefect server (SQLite), a process work pool and worker, a local
# archive of synthetic exposures standing in for CADC and a local folder
# standing in for VOSpace; then the batch deployment on the tutorial's IDs.
#
#   bash deployments/demo.sh          run it (again: finished exposures are skipped)
#   DEMO_FULL=1 bash deployments/demo.sh   full-size 36-CCD exposures (slower)
#   bash deployments/demo.sh stop     stop the server and the worker
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
demo="$root/.demo"
bin="$root/.venv/bin"
port="${DEMO_PORT:-4200}"

export PATH="$bin:$PATH"
export PREFECT_HOME="$demo/prefect"
export PREFECT_API_URL="http://127.0.0.1:$port/api"
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_API_PORT="$port"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY=false
export DO_NOT_TRACK=1
export CANFAR_CATALOGUE_POOL=catalogue-local
export CANFAR_CATALOGUE_ARCHIVE="file://$demo/archive"
export CANFAR_CATALOGUE_DESTINATION="file://$demo/vospace/catalogues"
export CANFAR_CATALOGUE_SCRATCH="$demo/scratch"

# The server and the worker shut down on SIGINT;
# whatever is left after 10 s is killed.
stop() {
  for name in worker server; do
    pidfile="$demo/$name.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      pid="$(cat "$pidfile")"
      kill -INT -- "-$pid" 2>/dev/null || kill -INT "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped the $name"
    fi
    rm -f "$pidfile"
  done
}

if [ "${1:-}" = "stop" ]; then
  stop
  exit 0
fi

mkdir -p "$demo/archive" "$demo/vospace/catalogues" "$demo/scratch" "$PREFECT_HOME"

running() { [ -f "$demo/$1.pid" ] && kill -0 "$(cat "$demo/$1.pid")" 2>/dev/null; }

if ! running server; then
  echo "starting the Prefect server on 127.0.0.1:$port (log: .demo/server.log)"
  setsid prefect server start >"$demo/server.log" 2>&1 &
  echo $! >"$demo/server.pid"
fi
# Ready when the API answers a real query, not only /health (a first start
# is still creating its database for a few seconds after that).
for _ in $(seq 120); do
  if prefect work-pool ls >/dev/null 2>&1; then
    break
  fi
  if ! running server; then
    echo "the Prefect server did not start; see .demo/server.log" >&2
    tail -20 "$demo/server.log" >&2
    exit 1
  fi
  sleep 1
done

# deploy.sh's first line says what it deployed; the rest tells a user how to start the workers,
# which the demo does itself just below
bash "$root/deployments/deploy.sh" | sed -n 1p

if ! running worker; then
  echo "starting a process worker on pool $CANFAR_CATALOGUE_POOL (log: .demo/worker.log)"
  setsid python -m canfar_catalogue.worker.process_worker --pool "$CANFAR_CATALOGUE_POOL" >"$demo/worker.log" 2>&1 &
  echo $! >"$demo/worker.pid"
fi

ids=(1056213p 1056215p 1056216p 1056217p 1056218p)
if [ -n "${DEMO_FULL:-}" ]; then size=(--nccd 36); else size=(--nccd 4 --width 1024 --height 1024); fi
seed=0
for id in "${ids[@]}"; do
  seed=$((seed + 1))
  if [ ! -f "$demo/archive/$id.fits.fz" ]; then
    canfar-catalogue synth "$demo/archive/$id.fits.fz" --seed "$seed" "${size[@]}"
  fi
done

batch='["1056215p","1056216p","1056217p","1056218p"]'
echo
echo "running: prefect deployment run 'catalogue/batch' --param ids='$batch' --watch"
status=0
prefect deployment run 'catalogue/batch' --param ids="$batch" --watch --watch-interval 3 || status=$?

echo
python - "$demo/vospace/catalogues" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print(f"catalogues in {root}:")
for record in sorted(root.glob("*.provenance.json")):
    p = json.loads(record.read_text())
    print(f"  {p['observation_id']}.cat  {p['sources']:6d} sources from {p['ccds']} CCDs  (made {p['created']})")
PY
echo
echo "Prefect UI: http://127.0.0.1:$port   (stop everything with: make stop)"
exit "$status"
