#!/usr/bin/env bash
# Stop the switchboard: first the switchboard itself (so that no
# orchestrator starts a model again), then the model job (frees the GPU
# memory, waiting for its kill_timeout), then Redis; with --agents also
# Nomad and Consul. Handles both deployments (Nomad jobs and the systemd
# units of deploy/). Idempotent: what is already stopped is skipped.
set -euo pipefail

NAMESPACE=${NOMAD_NAMESPACE:-llm}
STATE=/etc/llm-switchboard
AGENTS=0
PURGE=0

usage() {
	cat <<USAGE
Usage: sudo $0 [--namespace NS] [--purge] [--agents]

  --namespace NS  Nomad namespace of the jobs [$NAMESPACE] (env NOMAD_NAMESPACE)
  --purge         purge the jobs instead of keeping them dead in the history
  --agents        also stop the nomad and consul services
  -h, --help      this help

Stops, when running: llm-gateway/llm-orchestrator (systemd) or the Nomad job
llm-switchboard, every model job (sb-*), Redis (Nomad job redis or
redis-server). Removing what terraform created: terraform -chdir=terraform destroy.
USAGE
}

die() { echo "stop_all: $*" >&2; exit 1; }
log() { echo "==> $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--namespace) NAMESPACE=${2:?--namespace needs a name}; shift 2 ;;
	--purge) PURGE=1; shift ;;
	--agents) AGENTS=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
command -v systemctl >/dev/null || die "systemctl not found"
if [ -z "${NOMAD_TOKEN:-}" ] && [ -r "$STATE/nomad.token" ]; then
	NOMAD_TOKEN=$(cat "$STATE/nomad.token")
	export NOMAD_TOKEN
fi
export NOMAD_NAMESPACE=$NAMESPACE

stop_unit() {
	if systemctl is-active --quiet "$1"; then
		log "stopping $1"
		systemctl stop "$1"
	fi
}

stop_job() {
	local job=$1 args=(-yes)
	[ "$PURGE" -eq 1 ] && args+=(-purge)
	nomad job status -short "$job" >/dev/null 2>&1 || return 0
	log "stopping Nomad job $job (waits for its kill_timeout)"
	nomad job stop "${args[@]}" "$job"
}

stop_unit llm-gateway
stop_unit llm-orchestrator
if command -v nomad >/dev/null && systemctl is-active --quiet nomad; then
	stop_job llm-switchboard
	# Model jobs: the orchestrator's nomad.job_prefix (sb- by default).
	while read -r job; do
		[ -n "$job" ] && stop_job "$job"
	done < <(nomad job status -short 2>/dev/null | awk 'NR > 1 && $1 ~ /^sb-/ && $4 != "dead" { print $1 }')
	stop_job redis
fi
stop_unit redis-server

if [ "$AGENTS" -eq 1 ]; then
	stop_unit nomad
	stop_unit consul
fi
log "stopped"
