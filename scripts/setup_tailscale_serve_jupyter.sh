#!/usr/bin/env bash
# Make JupyterLab (the unit jupyter@USER, bound to 127.0.0.1:8888) reachable
# on the tailnet only, with 'tailscale serve' over HTTPS on 8443: never
# Funnel, notebooks must never be public. Idempotent.
set -euo pipefail

JUPYTER_USER=${SUDO_USER:-$(id -un)}
HTTPS_PORT=8443
ACTION=on

usage() {
	cat <<USAGE
Usage: $0 [--user USER] [--off | --status]

  --user USER  account whose jupyter@USER unit runs JupyterLab [$JUPYTER_USER]
  --off        stop serving JupyterLab on the tailnet
  --status     show what 'tailscale serve' serves
  -h, --help   this help

JupyterLab must listen on 127.0.0.1:8888 only (deploy/jupyter@.service,
installed by sudo scripts/install_prereqs.sh --jupyter-user USER); the
script refuses when port 8888 is bound to another address. Log in with the
token from 'sudo journalctl -u jupyter@USER' (or 'jupyter lab password').
USAGE
}

die() { echo "setup_tailscale_serve_jupyter: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--user) JUPYTER_USER=${2:?--user needs a name}; shift 2 ;;
	--off) ACTION=off; shift ;;
	--status) ACTION=status; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
command -v tailscale >/dev/null || die "tailscale not found: run sudo scripts/install_prereqs.sh, then sudo tailscale up"
tailscale status >/dev/null 2>&1 || die "tailscale is not up: sudo tailscale up"

case "$ACTION" in
status)
	tailscale serve status
	exit 0
	;;
off)
	tailscale serve --https="$HTTPS_PORT" off >/dev/null 2>&1 || true
	echo "JupyterLab no longer served on the tailnet"
	exit 0
	;;
esac

if command -v systemctl >/dev/null && ! systemctl is-active --quiet "jupyter@$JUPYTER_USER"; then
	die "jupyter@$JUPYTER_USER is not running: sudo systemctl enable --now jupyter@$JUPYTER_USER (installed by sudo scripts/install_prereqs.sh --jupyter-user $JUPYTER_USER)"
fi
if command -v ss >/dev/null; then
	listen=$(ss -Hltn 'sport = :8888' | awk '{ print $4 }')
	[ -n "$listen" ] || die "nothing listens on port 8888 (journalctl -u jupyter@$JUPYTER_USER)"
	while read -r addr; do
		case "$addr" in
		127.0.0.1:8888 | "[::1]:8888") ;;
		*) die "port 8888 is bound to $addr, not only 127.0.0.1: fix JupyterLab's --ip (deploy/jupyter@.service) before serving it" ;;
		esac
	done <<<"$listen"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:8888/api || true)
[ "$code" = 200 ] || die "JupyterLab does not answer on http://127.0.0.1:8888/api (got '${code:-nothing}')"

if tailscale serve status 2>/dev/null | grep -q "proxy http://127.0.0.1:8888"; then
	echo "already served"
else
	tailscale serve --bg --https="$HTTPS_PORT" http://127.0.0.1:8888 ||
		die "tailscale serve failed (HTTPS certificates enabled for the tailnet? run as root or the tailscale operator)"
fi
host=$(tailscale status --json | sed -n 's/^[[:space:]]*"DNSName":[[:space:]]*"\([^"]*\)\.",*$/\1/p' | head -1)
echo "JupyterLab on the tailnet only: https://${host:-<this node>}:$HTTPS_PORT/"
