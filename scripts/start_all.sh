#!/usr/bin/env bash
# Start everything on the box: Consul and Nomad (systemd), their ACL
# bootstrap on the first run, then Redis and the switchboard (gateway +
# orchestrator), either as Nomad jobs (through terraform, or `nomad job run`)
# or as the systemd units of deploy/ (the non-Nomad path). The model jobs
# are always the orchestrator's: it starts the first one on demand.
# Idempotent: what already runs is left running.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/opt/llm-switchboard}
STATE=/etc/llm-switchboard
ENV_FILE=/etc/llm-gateway.env
MODE=""
TFVARS=""

usage() {
	cat <<USAGE
Usage: sudo $0 --terraform TFVARS | --nomad | --systemd

  --terraform TFVARS  deploy Redis and the switchboard with 'terraform apply
                      -var-file=TFVARS' in terraform/ (namespace, ACL tokens,
                      secrets, jobs); see terraform/README.md
  --nomad             deploy them with 'nomad job run' only (secrets from
                      'nomad var put'; needs GATEWAY_API_KEY and
                      GATEWAY_ADMIN_API_KEY in the environment)
  --systemd           run Redis (redis-server), llm-orchestrator.service and
                      llm-gateway.service from deploy/ instead (settings
                      and keys in $ENV_FILE; install_prereqs.sh --systemd
                      installs them)
  -h, --help          this help

Consul and Nomad are started in every mode (the orchestrator runs the
models as Nomad jobs). On the first run the Consul and Nomad ACLs are
bootstrapped and the management tokens kept in $STATE/{consul,nomad}.token
(mode 0600). Then: scripts/smoke_test.sh.
USAGE
}

die() { echo "start_all: $*" >&2; exit 1; }
log() { echo "==> $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--terraform) TFVARS=${2:?--terraform needs a tfvars file}; MODE=terraform; shift 2 ;;
	--nomad) MODE=nomad; shift ;;
	--systemd) MODE=systemd; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[ -n "$MODE" ] || { usage >&2; die "choose --terraform TFVARS, --nomad or --systemd"; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
if [ "$MODE" = terraform ]; then
	[ -r "$TFVARS" ] || die "cannot read $TFVARS (see terraform/README.md)"
	TFVARS=$(realpath "$TFVARS")
fi
for cmd in consul nomad systemctl curl jq; do
	command -v "$cmd" >/dev/null || die "$cmd not found: run sudo scripts/install_prereqs.sh"
done
install -d -m 0700 "$STATE"

# wait_for NAME CMD...: retry CMD for up to 60 s.
wait_for() {
	local name=$1 i
	shift
	for i in $(seq 60); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		[ "$i" -lt 60 ] && sleep 1
	done
	die "$name did not come up in 60s (journalctl -u $name)"
}

log "consul"
systemctl enable --now consul
wait_for consul curl -fsS http://127.0.0.1:8500/v1/status/leader
if [ ! -s "$STATE/consul.token" ]; then
	log "bootstrapping Consul ACLs"
	consul acl bootstrap -format=json | jq -r .SecretID >"$STATE/consul.token.new" ||
		die "consul acl bootstrap failed (already bootstrapped without $STATE/consul.token? see Consul's ACL reset procedure)"
	chmod 600 "$STATE/consul.token.new"
	mv "$STATE/consul.token.new" "$STATE/consul.token"
fi
CONSUL_HTTP_TOKEN=$(cat "$STATE/consul.token")
export CONSUL_HTTP_TOKEN
# The agent and Nomad use the management token on this one-node box.
consul acl set-agent-token agent "$CONSUL_HTTP_TOKEN" >/dev/null
RESTART_NOMAD=0
umask 077
printf 'consul {\n  token = "%s"\n}\n' "$CONSUL_HTTP_TOKEN" >"$STATE/nomad-consul.hcl.new"
if ! cmp -s "$STATE/nomad-consul.hcl.new" /etc/nomad.d/consul-token.hcl 2>/dev/null; then
	install -m 0600 "$STATE/nomad-consul.hcl.new" /etc/nomad.d/consul-token.hcl
	RESTART_NOMAD=1
fi
rm -f "$STATE/nomad-consul.hcl.new"
umask 022

log "nomad"
systemctl enable --now nomad
if [ "$RESTART_NOMAD" -eq 1 ]; then systemctl restart nomad; fi
wait_for nomad curl -fsS http://127.0.0.1:4646/v1/status/leader
if [ ! -s "$STATE/nomad.token" ]; then
	log "bootstrapping Nomad ACLs"
	nomad acl bootstrap -json | jq -r .SecretID >"$STATE/nomad.token.new" ||
		die "nomad acl bootstrap failed (already bootstrapped without $STATE/nomad.token?)"
	chmod 600 "$STATE/nomad.token.new"
	mv "$STATE/nomad.token.new" "$STATE/nomad.token"
fi
NOMAD_TOKEN=$(cat "$STATE/nomad.token")
export NOMAD_TOKEN
wait_for nomad-node sh -c 'nomad node status -self -short | grep -q ready'

# set_env KEY VALUE: fill KEY in $ENV_FILE when it is empty there.
set_env_if_empty() {
	if grep -qE "^$1=.+" "$ENV_FILE"; then return 0; fi
	if grep -qE "^#? *$1=" "$ENV_FILE"; then
		sed -i -E "s|^#? *$1=.*|$1=$2|" "$ENV_FILE"
	else
		printf '%s=%s\n' "$1" "$2" >>"$ENV_FILE"
	fi
	log "set $1 in $ENV_FILE"
}

if [ "$MODE" != systemd ]; then
	for u in llm-gateway llm-orchestrator redis-server; do
		if systemctl is-active --quiet "$u"; then
			log "stopping and disabling $u: the Nomad jobs take over (one deployment at a time)"
			systemctl disable --now "$u" >/dev/null 2>&1
		fi
	done
fi

case "$MODE" in
terraform)
	command -v terraform >/dev/null || die "terraform not found: run sudo scripts/install_prereqs.sh"
	log "terraform apply -var-file=$TFVARS"
	terraform -chdir="$REPO/terraform" init -input=false
	terraform -chdir="$REPO/terraform" apply -input=false -auto-approve -var-file="$TFVARS"
	;;
nomad)
	[ -n "${GATEWAY_API_KEY:-}" ] || die "--nomad needs GATEWAY_API_KEY (and GATEWAY_ADMIN_API_KEY) in the environment for the job's secrets"
	log "namespace llm (gateway.hcl's nomad.namespace)"
	nomad namespace status llm >/dev/null 2>&1 || nomad namespace apply -description "llm-switchboard" llm
	log "secrets into nomad/jobs/llm-switchboard (the orchestrator uses the management tokens)"
	nomad var put -namespace llm -force nomad/jobs/llm-switchboard \
		gateway_api_key="$GATEWAY_API_KEY" gateway_admin_api_key="${GATEWAY_ADMIN_API_KEY:-}" \
		nomad_token="$NOMAD_TOKEN" consul_token="$CONSUL_HTTP_TOKEN" >/dev/null
	log "nomad job run redis + llm-switchboard"
	nomad job run -var namespace=llm "$PREFIX/jobs.nomad.d/redis.nomad.hcl"
	nomad job run -var namespace=llm -var "switchboard_bin=$PREFIX/bin/switchboard" \
		-var "config_file=$PREFIX/configs/gateway.hcl" "$PREFIX/jobs.nomad.d/llm-switchboard.nomad.hcl"
	;;
systemd)
	for u in llm-gateway llm-orchestrator; do
		[ -f "/etc/systemd/system/$u.service" ] || die "no /etc/systemd/system/$u.service: run sudo scripts/install_prereqs.sh --systemd"
	done
	[ -r "$ENV_FILE" ] || die "no $ENV_FILE: run sudo scripts/install_prereqs.sh --systemd, then set the API keys in it"
	grep -qE '^GATEWAY_API_KEY=.+' "$ENV_FILE" ||
		die "set GATEWAY_API_KEY in $ENV_FILE first (openssl rand -hex 24): the gateway listens on all interfaces"
	set_env_if_empty NOMAD_TOKEN "$NOMAD_TOKEN"
	set_env_if_empty CONSUL_HTTP_TOKEN "$CONSUL_HTTP_TOKEN"
	if nomad job status -namespace llm -short llm-switchboard >/dev/null 2>&1; then
		die "the Nomad job llm-switchboard exists too: scripts/stop_all.sh first (one deployment at a time)"
	fi
	log "redis-server (append-only)"
	systemctl enable --now redis-server
	wait_for redis-server redis-cli -h 127.0.0.1 ping
	log "llm-orchestrator, llm-gateway"
	systemctl daemon-reload
	systemctl enable llm-orchestrator llm-gateway >/dev/null
	systemctl restart llm-orchestrator llm-gateway
	wait_for llm-gateway curl -fsS http://127.0.0.1:8000/health
	;;
esac

log "up. Check: nomad job status -namespace llm; scripts/smoke_test.sh"
