#!/usr/bin/env bash
# Publish the gateway (and only the gateway: never vLLM, Nomad, Consul,
# Redis or JupyterLab) on the Internet through Tailscale Funnel, over HTTPS
# on 443. Refuses when no API key is configured. Idempotent.
set -euo pipefail

PORT=${GATEWAY_PORT:-8000}
ENV_FILE=${ENV_FILE:-/etc/llm-gateway.env}
ACTION=on

usage() {
	cat <<USAGE
Usage: $0 [--port PORT] [--off | --status]

  --port PORT  local gateway port to publish [$PORT] (env GATEWAY_PORT)
  --off        stop publishing
  --status     show what is published
  -h, --help   this help

Needs 'tailscale up' and Funnel allowed for this node in the tailnet policy
(nodeAttrs "funnel"); run as root or as the tailscale operator
(sudo tailscale set --operator=\$USER).

Refuses to publish unless an API key is configured: GATEWAY_API_KEY in the
environment or in $ENV_FILE (env ENV_FILE), or a keys file; and, as the
final word, the running gateway must answer 401 to a request without a key
(a gateway without keys serves everyone).
USAGE
}

die() { echo "setup_tailscale_funnel: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--port) PORT=${2:?--port needs a number}; shift 2 ;;
	--off) ACTION=off; shift ;;
	--status) ACTION=status; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$PORT'"
command -v tailscale >/dev/null || die "tailscale not found: run sudo scripts/install_prereqs.sh, then sudo tailscale up"
command -v curl >/dev/null || die "curl not found"
tailscale status >/dev/null 2>&1 || die "tailscale is not up: sudo tailscale up"

case "$ACTION" in
status)
	tailscale funnel status
	exit 0
	;;
off)
	tailscale funnel --https=443 off >/dev/null 2>&1 || true
	echo "funnel off (nothing published on 443)"
	exit 0
	;;
esac

# 1. A key must be configured somewhere the gateway reads it.
key=${GATEWAY_API_KEY:-}
if [ -z "$key" ] && [ -r "$ENV_FILE" ]; then
	key=$(sed -n 's/^GATEWAY_API_KEY=//p' "$ENV_FILE" | tail -1)
fi
if [ -z "$key" ]; then
	echo "setup_tailscale_funnel: GATEWAY_API_KEY is not set here (env or $ENV_FILE); checking the gateway itself" >&2
fi

# 2. The running gateway must refuse a request without a key.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/health" || true)
[ "$code" = 200 ] || die "no gateway answering on 127.0.0.1:$PORT/health (got '${code:-nothing}'): start it first (scripts/start_all.sh)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/v1/models" || true)
case "$code" in
401) ;;
200) die "no API key configured: the gateway on port $PORT answers without a key; refusing to publish it (set GATEWAY_API_KEY or a keys file, restart the gateway)" ;;
*) die "cannot tell whether the gateway requires a key (GET /v1/models without a key answered '${code:-nothing}', want 401): refusing to publish" ;;
esac

if tailscale funnel status 2>/dev/null | grep -q "proxy http://127.0.0.1:$PORT"; then
	echo "already published"
else
	tailscale funnel --bg --https=443 "http://127.0.0.1:$PORT" ||
		die "tailscale funnel failed: is Funnel allowed for this node (tailnet policy nodeAttrs \"funnel\") and HTTPS certificates enabled?"
fi
host=$(tailscale status --json | sed -n 's/^[[:space:]]*"DNSName":[[:space:]]*"\([^"]*\)\.",*$/\1/p' | head -1)
echo "published: https://${host:-<this node>} -> http://127.0.0.1:$PORT"
echo "clients:   base_url=https://${host:-<this node>}/v1 with a gateway API key"
echo "admin routes stay refused through Funnel (gateway.admin_via_funnel = false)"
