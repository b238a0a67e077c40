#!/bin/sh
# Starts mitmdump with the flowexport addon in reverse-proxy mode, configured from the
# environment (or from a mitmproxy config.yaml in the confdir, which mitmproxy applies
# after these settings):
#   FLOWEXPORT_UPSTREAM      the app behind the proxy, e.g. http://app:8000 (required)
#   FLOWEXPORT_LISTEN_HOST   default 0.0.0.0
#   FLOWEXPORT_LISTEN_PORT   default 8080
#   FLOWEXPORT_COLLECTORS    space- or comma-separated, e.g. "collector:4739 netflow9://goflow2:2055"
#   FLOWEXPORT_DOMAIN_ID     observation domain id, distinct per proxy process (default 1)
#   FLOWEXPORT_OPTIONS       more mitmdump arguments, e.g. "--set flowexport_cookies=names"
#   FLOWEXPORT_CONFDIR       mitmproxy confdir (default ~/.mitmproxy)
#   FLOWEXPORT_ADDON         path of the addon (default: the image's, else the checkout's)
#   FLOWEXPORT_DRY_RUN=1     print the command instead of running it
set -eu
: "${FLOWEXPORT_UPSTREAM:?set FLOWEXPORT_UPSTREAM to the app behind the proxy, e.g. http://app:8000}"
here="$(cd "$(dirname "$0")" && pwd)"
addon="${FLOWEXPORT_ADDON:-/opt/flowexport/addon/flowexport.py}"
if [ -z "${FLOWEXPORT_ADDON:-}" ] && [ ! -f "$addon" ] && [ -f "$here/../addon/flowexport.py" ]; then
    addon="$(cd "$here/../addon" && pwd)/flowexport.py"  # run from a checkout
fi
set -- mitmdump \
    --listen-host "${FLOWEXPORT_LISTEN_HOST:-0.0.0.0}" \
    --listen-port "${FLOWEXPORT_LISTEN_PORT:-8080}" \
    --mode "reverse:${FLOWEXPORT_UPSTREAM}" \
    --set keep_host_header=true \
    --set "confdir=${FLOWEXPORT_CONFDIR:-$HOME/.mitmproxy}" \
    --set "flowexport_observation_domain_id=${FLOWEXPORT_DOMAIN_ID:-1}" \
    -s "$addon"
for collector in $(echo "${FLOWEXPORT_COLLECTORS:-127.0.0.1:4739}" | tr ',' ' '); do
    set -- "$@" --set "flowexport_collectors=${collector}"
done
# shellcheck disable=SC2086  # FLOWEXPORT_OPTIONS is a list of arguments
set -- "$@" ${FLOWEXPORT_OPTIONS:-}
if [ "${FLOWEXPORT_DRY_RUN:-0}" = "1" ]; then
    printf '%s\n' "$@"
    exit 0
fi
exec "$@"
