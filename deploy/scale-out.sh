#!/bin/sh
# Runs N flowexport proxy processes (mitmproxy uses one core each) on consecutive ports,
# each with its own observation domain id, and prints an HAProxy backend for them.
#   FLOWEXPORT_UPSTREAM=http://127.0.0.1:8000 FLOWEXPORT_COLLECTORS=127.0.0.1:4739 \
#       deploy/scale-out.sh 4 18080
# Stops them all on Ctrl-C. Every variable of entrypoint.sh applies to all of them.
set -eu
count="${1:?usage: scale-out.sh N [first port]}"
first="${2:-18080}"
here="$(cd "$(dirname "$0")" && pwd)"
pids=""
trap 'kill $pids 2>/dev/null; wait' INT TERM EXIT
echo "backend flowexport"
echo "    balance leastconn"
i=0
while [ "$i" -lt "$count" ]; do
    port=$((first + i))
    FLOWEXPORT_LISTEN_PORT="$port" FLOWEXPORT_DOMAIN_ID="$((i + 1))" \
        FLOWEXPORT_CONFDIR="${FLOWEXPORT_CONFDIR:-$HOME/.mitmproxy}" \
        "$here/entrypoint.sh" >"${TMPDIR:-/tmp}/flowexport-$port.log" 2>&1 &
    pids="$pids $!"
    echo "    server proxy$((i + 1)) 127.0.0.1:$port check"
    i=$((i + 1))
done
wait
