#!/usr/bin/env bash
# Install JupyterLab in a venv for a user and run it as the systemd unit
# jupyterlab.service on 127.0.0.1:8888; optionally expose it on the tailnet
# (never publicly) with 'tailscale serve'. Idempotent.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JUPYTER_USER=${SUDO_USER:-}
SERVE=0

usage() {
	cat <<USAGE
Usage: sudo $0 [--user USER] [--serve]

  --user USER  account that runs JupyterLab [the sudo caller]
  --serve      also 'tailscale serve' it on the tailnet (HTTPS :8443),
               not Funnel: notebooks must never be public
  -h, --help   this help

The venv is ~USER/.venvs/jupyterlab; the token to log in is printed by
'sudo journalctl -u jupyterlab' (or set a password: jupyter lab password).
USAGE
}

die() { echo "install_jupyterlab: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--user) JUPYTER_USER=${2:?--user needs a name}; shift 2 ;;
	--serve) SERVE=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
if [ -z "$JUPYTER_USER" ] || [ "$JUPYTER_USER" = root ]; then
	die "give --user USER (not root)"
fi
id "$JUPYTER_USER" >/dev/null 2>&1 || die "no such user: $JUPYTER_USER"
[ -r "$HERE/jupyterlab.service" ] || die "missing $HERE/jupyterlab.service"
HOME_DIR=$(getent passwd "$JUPYTER_USER" | cut -d: -f6)
VENV=$HOME_DIR/.venvs/jupyterlab

if [ ! -x "$VENV/bin/jupyter" ]; then
	echo "==> JupyterLab into $VENV"
	command -v python3 >/dev/null || die "python3 not found"
	sudo -u "$JUPYTER_USER" python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
	sudo -u "$JUPYTER_USER" "$VENV/bin/pip" install -q --upgrade pip jupyterlab openai || die "pip install jupyterlab failed"
fi

unit=$(sed -e "s#@USER@#$JUPYTER_USER#g" -e "s#@HOME@#$HOME_DIR#g" -e "s#@VENV@#$VENV#g" "$HERE/jupyterlab.service")
if ! printf '%s\n' "$unit" | cmp -s - /etc/systemd/system/jupyterlab.service; then
	printf '%s\n' "$unit" >/etc/systemd/system/jupyterlab.service
	systemctl daemon-reload
	echo "==> installed /etc/systemd/system/jupyterlab.service"
fi
systemctl enable jupyterlab >/dev/null
systemctl restart jupyterlab
echo "==> jupyterlab running on 127.0.0.1:8888 as $JUPYTER_USER"

if [ "$SERVE" -eq 1 ]; then
	command -v tailscale >/dev/null || die "tailscale not found"
	tailscale serve --bg --https=8443 http://127.0.0.1:8888
	host=$(tailscale status --json | jq -r '.Self.DNSName | sub("\\.$"; "")')
	echo "==> on the tailnet only: https://$host:8443"
fi
