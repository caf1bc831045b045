#!/usr/bin/env bash
# Print the addresses at which this box's services are reachable: the
# public gateway URL (Funnel), the tailnet URLs (gateway, JupyterLab through
# 'tailscale serve'), SSH, and the local-only consoles. Changes nothing.
set -euo pipefail

PORT=${GATEWAY_PORT:-8000}

usage() {
	cat <<USAGE
Usage: $0

Prints the URLs of this node: public (Tailscale Funnel), tailnet
(gateway, JupyterLab, SSH) and local (Nomad UI, Consul UI). Env
GATEWAY_PORT [$PORT].
USAGE
}

die() { echo "print_tailscale_urls: $*" >&2; exit 1; }

case "${1:-}" in
"") ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; die "unknown argument: $1" ;;
esac
command -v tailscale >/dev/null || die "tailscale not found: run sudo scripts/install_prereqs.sh"
tailscale status >/dev/null 2>&1 || die "tailscale is not up: sudo tailscale up"

# The first DNSName of 'tailscale status --json' is this node's (Self).
host=$(tailscale status --json | sed -n 's/^[[:space:]]*"DNSName":[[:space:]]*"\([^"]*\)\.",*$/\1/p' | head -1)
ip=$(tailscale ip -4 2>/dev/null | head -1 || true)
[ -n "$host" ] || host=${ip:-unknown}
funnel=$(tailscale funnel status 2>/dev/null || true)
serve=$(tailscale serve status 2>/dev/null || true)

echo "node:       $host (${ip:-no IPv4})"
if grep -q "Funnel on" <<<"$funnel"; then
	echo "public:     https://$host/v1        (OpenAI base_url, with a user key)"
else
	echo "public:     not published (scripts/setup_tailscale_funnel.sh)"
fi
echo "tailnet:    http://$host:$PORT/v1  (gateway, from devices in the tailnet)"
if grep -q ':8443' <<<"$serve"; then
	echo "jupyter:    https://$host:8443/      (tailnet only)"
else
	echo "jupyter:    not served (scripts/setup_tailscale_serve_jupyter.sh), or ssh -L 8888:127.0.0.1:8888 $(id -un)@$host"
fi
echo "ssh:        ssh $(id -un)@$host   (VS Code Remote-SSH / PyCharm: same host)"
echo "local only: Nomad UI http://127.0.0.1:4646/ui, Consul UI http://127.0.0.1:8500/ui"
echo "            (from a laptop: ssh -L 4646:127.0.0.1:4646 -L 8500:127.0.0.1:8500 $(id -un)@$host)"
