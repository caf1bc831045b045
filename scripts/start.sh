#!/usr/bin/env bash
# Start everything on the box: Consul and Nomad (systemd), their ACL
# bootstrap on the first run, then Redis and the switchboard as Nomad jobs,
# through terraform (default) or `nomad job run`. Idempotent.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/opt/llm-switchboard}
STATE=/etc/llm-switchboard
MODE=terraform
TFVARS=""

usage() {
	cat <<USAGE
Usage: sudo $0 [--terraform TFVARS | --nomad]

  --terraform TFVARS  deploy with 'terraform apply -var-file=TFVARS' in
                      terraform/ (namespace, ACL tokens, secrets, jobs) [default]
  --nomad             deploy with 'nomad job run' only (namespace "default",
                      secrets from 'nomad var put', no terraform)
  -h, --help          this help

On the first run it bootstraps the Consul and Nomad ACLs and keeps the
management tokens in $STATE/{consul,nomad}.token (mode 0600).
USAGE
}

die() { echo "start: $*" >&2; exit 1; }
log() { echo "==> $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--terraform) TFVARS=${2:?--terraform needs a tfvars file}; MODE=terraform; shift 2 ;;
	--nomad) MODE=nomad; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
if [ "$MODE" = terraform ]; then
	[ -n "$TFVARS" ] || die "give --terraform TFVARS (see terraform/README.md) or --nomad"
	[ -r "$TFVARS" ] || die "cannot read $TFVARS"
	TFVARS=$(realpath "$TFVARS")
fi
for cmd in consul nomad systemctl; do
	command -v "$cmd" >/dev/null || die "$cmd not found: run scripts/install_prereqs.sh"
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
		die "consul acl bootstrap failed (already bootstrapped without $STATE/consul.token? see 'consul acl bootstrap' reset docs)"
	chmod 600 "$STATE/consul.token.new"
	mv "$STATE/consul.token.new" "$STATE/consul.token"
fi
CONSUL_HTTP_TOKEN=$(cat "$STATE/consul.token")
export CONSUL_HTTP_TOKEN
# The agent and Nomad use the management token on this one-node box.
consul acl set-agent-token agent "$CONSUL_HTTP_TOKEN" >/dev/null
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
if [ "${RESTART_NOMAD:-0}" -eq 1 ]; then systemctl restart nomad; fi
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

case "$MODE" in
terraform)
	command -v terraform >/dev/null || die "terraform not found: run scripts/install_prereqs.sh"
	log "terraform apply -var-file=$TFVARS"
	terraform -chdir="$REPO/terraform" init -input=false
	terraform -chdir="$REPO/terraform" apply -input=false -auto-approve -var-file="$TFVARS"
	;;
nomad)
	[ -n "${GATEWAY_API_KEY:-}" ] || die "--nomad needs GATEWAY_API_KEY (and GATEWAY_ADMIN_API_KEY) in the environment for the job's secrets"
	log "secrets into nomad/jobs/llm-switchboard (orchestrator uses the management tokens)"
	nomad var put -force nomad/jobs/llm-switchboard \
		gateway_api_key="$GATEWAY_API_KEY" gateway_admin_api_key="${GATEWAY_ADMIN_API_KEY:-}" \
		nomad_token="$NOMAD_TOKEN" consul_token="$CONSUL_HTTP_TOKEN" >/dev/null
	log "nomad job run redis + llm-switchboard"
	nomad job run "$PREFIX/jobs.nomad.d/redis.nomad.hcl"
	nomad job run -var "switchboard_bin=$PREFIX/bin/switchboard" -var "config_file=$PREFIX/configs/gateway.hcl" \
		"$PREFIX/jobs.nomad.d/llm-switchboard.nomad.hcl"
	;;
esac

log "up. Check: nomad job status; scripts/smoke_test.sh"
