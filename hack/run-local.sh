#!/usr/bin/env bash
# Run the all-in-one role on sample data against a local Redis.
# Uses REDIS_ADDR (default localhost:6379) when it answers PING; otherwise starts a throwaway
# redis-server on a free port (no persistence) and stops it on exit. Ctrl-C drains and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
[ -x "$PY" ] || { echo "run 'make run' (it creates .venv first)" >&2; exit 1; }

[ -f config/config.yaml ] || cp config/config.example.yaml config/config.yaml

# Sample data: a few files of each kind, some whose names contain "fail" (they end in the DLQ).
if [ ! -d data ]; then
  mkdir -p data/reports data/tmp
  for i in $(seq 1 40); do head -c $((i * 1024)) /dev/zero > "data/file-$i.txt"; done
  for i in 1 2 3; do head -c 4096 /dev/zero > "data/reports/report-$i.pdf"; done
  head -c 100 /dev/zero > data/reports/fail-me.txt
  head -c 100 /dev/zero > data/tmp/skipped.tmp
fi

addr="${REDIS_ADDR:-localhost:6379}"
pong() { "$PY" - "$1" <<'PYEOF'
import socket, sys
host, _, port = sys.argv[1].rpartition(":")
try:
    with socket.create_connection((host, int(port)), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith((b"+PONG", b"-NOAUTH")) else 1)
except OSError:
    sys.exit(1)
PYEOF
}

if ! pong "$addr"; then
  command -v redis-server >/dev/null || { echo "no Redis at $addr and no redis-server to start" >&2; exit 1; }
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize no \
    --logfile "$dir/redis.log" &
  rpid=$!
  trap 'kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; rm -rf "$dir"' EXIT
  addr="127.0.0.1:$port"
  for _ in $(seq 1 100); do pong "$addr" && break; sleep 0.05; done
  echo "no Redis answered at ${REDIS_ADDR:-localhost:6379}; started a throwaway redis-server on $addr" >&2
fi

echo "all-in-one on $addr; metrics on http://localhost:9090/metrics; Ctrl-C to stop" >&2
REDIS_ADDR="$addr" .venv/bin/job-queue-system --role=all --config=config/config.yaml "$@"
