#!/usr/bin/env bash
# Publish the gateway (and only the gateway: never vLLM, Nomad, Consul or
# Redis) on the Internet through Tailscale Funnel, over HTTPS on 443.
# Refuses when the gateway has no API key. Idempotent.
set -euo pipefail

PORT=${GATEWAY_PORT:-8000}
ACTION=on

usage() {
	cat <<USAGE
Usage: $0 [--port PORT] [--off | --status]

  --port PORT  local gateway port to publish [$PORT] (env GATEWAY_PORT)
  --off        stop publishing
  --status     show what is published, with the public URL
  -h, --help   this help

Needs tailscale up, with Funnel allowed for this node in the tailnet policy
(nodeAttrs "funnel"). Refuses to publish unless GATEWAY_API_KEY is set (or
/etc/llm-switchboard/gateway.env defines it): the gateway must never be
public without keys.
USAGE
}

die() { echo "tailscale_funnel: $*" >&2; exit 1; }

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
command -v tailscale >/dev/null || die "tailscale not found: run scripts/install_prereqs.sh, then sudo tailscale up"
tailscale status >/dev/null 2>&1 || die "tailscale is not up: sudo tailscale up"

case "$ACTION" in
status)
	tailscale funnel status
	exit 0
	;;
off)
	tailscale funnel --https=443 off || true
	echo "funnel off"
	exit 0
	;;
esac

if [ -z "${GATEWAY_API_KEY:-}" ] && [ -r /etc/llm-switchboard/gateway.env ]; then
	GATEWAY_API_KEY=$(sed -n 's/^GATEWAY_API_KEY=//p' /etc/llm-switchboard/gateway.env | tail -1)
fi
[ -n "${GATEWAY_API_KEY:-}" ] || die "no API key configured (GATEWAY_API_KEY): refusing to publish the gateway"

health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/health" || true)
[ "$health" = 200 ] || die "no gateway answering on 127.0.0.1:$PORT/health (got '${health:-nothing}'): start it first"

tailscale funnel --bg --https=443 "http://127.0.0.1:$PORT"
host=$(tailscale status --json | jq -r '.Self.DNSName | sub("\\.$"; "")')
echo "published: https://$host -> http://127.0.0.1:$PORT"
echo "clients:   base_url=https://$host/v1 with a gateway API key"
