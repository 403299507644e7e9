# Sourced by scripts/test.sh and scripts/bench.sh: start_moto OUT ERR starts scripts/moto_server.py
# (from .venv) in the background, waits until it prints its port, and sets moto_pid and
# moto_port; the caller kills moto_pid when done. Exits the script if the server does not start.
start_moto() {
  local out=$1 err=$2
  .venv/bin/python scripts/moto_server.py >"$out" 2>"$err" &
  moto_pid=$!
  moto_port=""
  for _ in $(seq 1 600); do
    moto_port=$(head -n1 "$out" 2>/dev/null || true)
    [ -n "$moto_port" ] && return 0
    kill -0 "$moto_pid" 2>/dev/null || { cat "$err"; echo "moto server did not start"; exit 1; }
    sleep 0.1  # waiting for an external process to start, not synchronising tests
  done
  kill "$moto_pid" 2>/dev/null || true
  echo "moto server did not report its port"
  exit 1
}
