#!/bin/sh
# Runs N flowexport proxy processes (mitmproxy uses one core each) on consecutive ports,
# each with its own observation domain id, and prints an HAProxy backend for them:
#   FLOWEXPORT_UPSTREAM=http://127.0.0.1:8000 FLOWEXPORT_COLLECTORS=127.0.0.1:4739 \
#       deploy/scale-out.sh 4 18080
# Every variable of entrypoint.sh applies to all of them. Works in the image and from a
# checkout (with the project's .venv, after `make install`). Each proxy logs to
# $TMPDIR/flowexport-PORT.log; if one dies, its log is shown and the others are stopped.
# Ctrl-C stops them all.
set -eu
usage="usage: scale-out.sh N [FIRST_PORT], with FLOWEXPORT_UPSTREAM and the other variables of entrypoint.sh"
count="${1:-}"
first="${2:-18080}"
here="$(cd "$(dirname "$0")" && pwd)"
fail() { echo "scale-out: $*" >&2; exit 2; }

# prerequisites, before anything is started or printed
case "$count" in ''|*[!0-9]*|0) fail "$usage" ;; esac
case "$first" in ''|*[!0-9]*) fail "$usage" ;; esac
[ -n "${FLOWEXPORT_UPSTREAM:-}" ] || fail "set FLOWEXPORT_UPSTREAM to the app behind the proxies, e.g. http://127.0.0.1:8000"
if ! command -v mitmdump >/dev/null 2>&1; then
    if [ -x "$here/../.venv/bin/mitmdump" ]; then
        PATH="$(cd "$here/../.venv/bin" && pwd):$PATH"
        export PATH
    else
        fail "mitmdump not found: run \`make install\` in the project (it makes .venv), or put mitmdump on PATH"
    fi
fi
python="$(dirname "$(command -v mitmdump)")/python3"
[ -x "$python" ] || python=python3
host="${FLOWEXPORT_LISTEN_HOST:-0.0.0.0}"
i=0
while [ "$i" -lt "$count" ]; do
    port=$((first + i))
    "$python" -c "import socket, sys; s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2])))" \
        "$host" "$port" 2>/dev/null || fail "port $port on $host is not free"
    i=$((i + 1))
done

logdir="${TMPDIR:-/tmp}"
pids=""
stop_all() { [ -z "$pids" ] || kill $pids 2>/dev/null || true; wait 2>/dev/null || true; }
trap 'stop_all; exit 0' INT TERM
i=0
while [ "$i" -lt "$count" ]; do
    port=$((first + i))
    FLOWEXPORT_LISTEN_PORT="$port" FLOWEXPORT_DOMAIN_ID="$((i + 1))" \
        FLOWEXPORT_CONFDIR="${FLOWEXPORT_CONFDIR:-$HOME/.mitmproxy}" \
        "$here/entrypoint.sh" >"$logdir/flowexport-$port.log" 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done
echo "backend flowexport"
echo "    balance leastconn"
i=0
while [ "$i" -lt "$count" ]; do
    echo "    server proxy$((i + 1)) 127.0.0.1:$((first + i)) check"
    i=$((i + 1))
done

# watch the children: one that dies is reported with its log, and the others stop
while :; do
    sleep 1
    i=0
    for pid in $pids; do
        if ! kill -0 "$pid" 2>/dev/null; then
            port=$((first + i))
            wait "$pid" && status=0 || status=$?
            echo "scale-out: proxy $((i + 1)) (port $port) exited with status $status; its log ($logdir/flowexport-$port.log):" >&2
            tail -n 20 "$logdir/flowexport-$port.log" >&2
            stop_all
            exit 1
        fi
        i=$((i + 1))
    done
done
