#!/usr/bin/env bash
# Install what the switchboard needs on a DGX Spark (aarch64, DGX OS /
# Ubuntu): Docker, the NVIDIA Container Toolkit, Nomad + Consul (+ Terraform)
# from HashiCorp's apt repository, Redis, jq, Tailscale, a JupyterLab venv;
# the switchboard files under the prefix; the Nomad/Consul agent
# configuration the jobspecs need; with --systemd the units of deploy/.
# Idempotent: run it again after a change.
set -euo pipefail

PREFIX=/opt/llm-switchboard
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVICE_PLUGIN=0
SKIP_PACKAGES=0
SYSTEMD=0
JUPYTER_USER=${SUDO_USER:-}
JUPYTER=1
ENV_FILE=/etc/llm-gateway.env

usage() {
	cat <<USAGE
Usage: sudo $0 [--prefix DIR] [--repo DIR] [--device-plugin] [--systemd]
               [--jupyter-user USER | --no-jupyter] [--skip-packages]

Installs Docker, the NVIDIA Container Toolkit, Nomad, Consul, Terraform,
Redis, jq and Tailscale (arm64 repositories), a JupyterLab venv for
--jupyter-user with the unit jupyter@USER (127.0.0.1:8888), copies the switchboard
(bin/switchboard-linux-arm64 from 'make build-arm64', configs/, jobs.nomad.d/)
to --prefix [$PREFIX], creates the cache and data directories, and writes
/etc/nomad.d/client.hcl (raw_exec + docker plugins, nvidia runtime allowed,
docker volumes, max_kill_timeout 120s, host volume redis-data, meta gpu=gb10)
and /etc/consul.d/llm-switchboard.hcl (single-node server, ACLs on).

  --prefix DIR       install directory [$PREFIX]
  --repo DIR         repository checkout to copy from [$REPO]
  --device-plugin    also build the NVIDIA device plugin for arm64 (needs Go)
                     and enable it, for gpu_mode = "device"; without it use
                     gpu_mode = "runtime" (see jobs.nomad.d/README.md)
  --systemd          non-Nomad path: install deploy/llm-gateway.service,
                     deploy/llm-orchestrator.service, $ENV_FILE (from
                     deploy/.env.example, never overwritten), the system
                     user llm-switchboard, and Redis as redis-server with
                     append-only persistence (start_all.sh --systemd).
                     Without it redis-server stays disabled: Redis runs as
                     the Nomad job redis on the same port.
  --jupyter-user U   account that runs JupyterLab [the sudo caller]
  --no-jupyter       no JupyterLab
  --skip-packages    only write files and directories, install no packages
  -h, --help         this help
USAGE
}

die() { echo "install_prereqs: $*" >&2; exit 1; }
log() { echo "==> $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
	--repo) REPO=${2:?--repo needs a directory}; shift 2 ;;
	--device-plugin) DEVICE_PLUGIN=1; shift ;;
	--skip-packages) SKIP_PACKAGES=1; shift ;;
	--systemd) SYSTEMD=1; shift ;;
	--jupyter-user) JUPYTER_USER=${2:?--jupyter-user needs a name}; shift 2 ;;
	--no-jupyter) JUPYTER=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
if [ "$JUPYTER" -eq 1 ]; then
	if [ -z "$JUPYTER_USER" ] || [ "$JUPYTER_USER" = root ]; then
		die "give --jupyter-user USER (not root), or --no-jupyter"
	fi
	id "$JUPYTER_USER" >/dev/null 2>&1 || die "no such user: $JUPYTER_USER"
fi
ARCH=$(dpkg --print-architecture 2>/dev/null || true)
[ "$ARCH" = arm64 ] || echo "install_prereqs: warning: architecture is '${ARCH:-unknown}', not arm64 (DGX Spark); continuing" >&2
[ -r /etc/os-release ] || die "no /etc/os-release: Debian or Ubuntu required"
# shellcheck disable=SC1091
. /etc/os-release
case "${ID:-} ${ID_LIKE:-}" in
*ubuntu* | *debian*) ;;
*) die "unsupported distribution '${ID:-?}': Debian or Ubuntu (DGX OS) required" ;;
esac
CODENAME=${VERSION_CODENAME:-${UBUNTU_CODENAME:-}}
[ -n "$CODENAME" ] || die "cannot tell the distribution codename from /etc/os-release"
if [ ! -d "$REPO/configs" ] || [ ! -d "$REPO/jobs.nomad.d" ] || [ ! -d "$REPO/deploy" ]; then
	die "$REPO is not a repository checkout (no configs/, jobs.nomad.d/ or deploy/)"
fi

# write_file PATH MODE: write stdin to PATH only when it differs; returns 0
# when the file changed.
write_file() {
	local path=$1 mode=$2 tmp
	tmp=$(mktemp)
	cat >"$tmp"
	if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
		rm -f "$tmp"
		return 1
	fi
	install -D -m "$mode" "$tmp" "$path"
	rm -f "$tmp"
	log "wrote $path"
}

add_apt_repo() { # name keyring-url list-line
	local name=$1 key_url=$2 line=$3 keyring="/usr/share/keyrings/$1.gpg"
	if [ ! -s "$keyring" ]; then
		curl -fsSL "$key_url" | gpg --dearmor -o "$keyring" || die "cannot fetch the $name signing key from $key_url"
	fi
	echo "deb [arch=$ARCH signed-by=$keyring] $line" | write_file "/etc/apt/sources.list.d/$name.list" 0644 || true
}

install_packages() {
	export DEBIAN_FRONTEND=noninteractive
	log "base packages"
	apt-get update -q
	apt-get install -y -q ca-certificates curl gnupg jq redis-server redis-tools python3-venv git

	if ! command -v docker >/dev/null; then
		log "Docker (docker.com arm64 repository)"
		add_apt_repo docker "https://download.docker.com/linux/${ID}/gpg" "https://download.docker.com/linux/${ID} $CODENAME stable"
		apt-get update -q
		apt-get install -y -q docker-ce docker-ce-cli containerd.io
	fi

	if ! command -v nvidia-ctk >/dev/null; then
		log "NVIDIA Container Toolkit"
		local keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
		[ -s "$keyring" ] || curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --dearmor -o "$keyring"
		curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
			sed "s#deb https://#deb [signed-by=$keyring] https://#g" |
			write_file /etc/apt/sources.list.d/nvidia-container-toolkit.list 0644 || true
		apt-get update -q
		apt-get install -y -q nvidia-container-toolkit
	fi
	if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
		log "registering the nvidia runtime with Docker"
		nvidia-ctk runtime configure --runtime=docker
		systemctl restart docker
	fi

	log "Nomad, Consul, Terraform (apt.releases.hashicorp.com)"
	add_apt_repo hashicorp-archive-keyring https://apt.releases.hashicorp.com/gpg "https://apt.releases.hashicorp.com $CODENAME main"
	apt-get update -q
	apt-get install -y -q nomad consul terraform

	if ! command -v tailscale >/dev/null; then
		log "Tailscale"
		curl -fsSL https://tailscale.com/install.sh | sh
	fi
}

build_device_plugin() {
	local bin=/opt/nomad/plugins/nomad-device-nvidia
	if [ -x "$bin" ]; then
		log "NVIDIA device plugin already at $bin"
		return
	fi
	command -v go >/dev/null || die "--device-plugin needs Go (https://go.dev/dl/, linux-arm64) to build the plugin"
	log "building the NVIDIA device plugin for arm64 (the official release is amd64-only)"
	local src
	src=$(mktemp -d)
	git clone --depth 1 https://github.com/hashicorp/nomad-device-nvidia "$src"
	(cd "$src" && pkg=. && { [ ! -d cmd ] || pkg=./cmd; } && CGO_ENABLED=1 GOOS=linux GOARCH=arm64 go build -o nomad-device-nvidia "$pkg") ||
		die "building the device plugin failed; use gpu_mode = \"runtime\" instead (jobs.nomad.d/README.md)"
	install -D -m 0755 "$src/nomad-device-nvidia" "$bin"
	rm -rf "$src"
}

[ "$SKIP_PACKAGES" -eq 1 ] || install_packages
[ "$DEVICE_PLUGIN" -eq 0 ] || build_device_plugin

log "directories under $PREFIX"
install -d -m 0755 "$PREFIX" "$PREFIX/bin" "$PREFIX/hf-cache" "$PREFIX/vllm-cache"
install -d -m 0700 "$PREFIX/redis"
# The official Redis image runs as uid 999.
chown 999:999 "$PREFIX/redis"
install -d -m 0700 /etc/llm-switchboard

log "switchboard files from $REPO"
if [ -x "$REPO/bin/switchboard-linux-arm64" ]; then
	install -m 0755 "$REPO/bin/switchboard-linux-arm64" "$PREFIX/bin/switchboard"
elif [ ! -x "$PREFIX/bin/switchboard" ]; then
	echo "install_prereqs: warning: no $REPO/bin/switchboard-linux-arm64; run 'make build-arm64' and run this again" >&2
fi
# configs/: never overwrite the operator's edits, only add missing files.
(cd "$REPO/configs" && find . -type f -name '*.hcl') | while read -r f; do
	if [ ! -e "$PREFIX/configs/$f" ]; then
		install -D -m 0644 "$REPO/configs/$f" "$PREFIX/configs/$f"
	fi
done
# jobs.nomad.d/: always the repository's.
rm -rf "$PREFIX/jobs.nomad.d"
cp -r "$REPO/jobs.nomad.d" "$PREFIX/jobs.nomad.d"

# install_unit NAME: deploy/NAME into /etc/systemd/system, with the prefix.
UNITS_CHANGED=0
install_unit() {
	sed "s#/opt/llm-switchboard#$PREFIX#g" "$REPO/deploy/$1" |
		write_file "/etc/systemd/system/$1" 0644 && UNITS_CHANGED=1
	return 0
}

if systemctl list-unit-files redis-server.service >/dev/null 2>&1; then
	if [ "$SYSTEMD" -eq 1 ]; then
		log "Redis: redis-server with append-only persistence (systemd path)"
		conf=/etc/redis/redis.conf
		if [ -w "$conf" ] && ! grep -qE '^appendonly yes' "$conf"; then
			sed -i -E 's/^#? *appendonly .*/appendonly yes/' "$conf"
			grep -qE '^appendonly yes' "$conf" || echo 'appendonly yes' >>"$conf"
			systemctl restart redis-server
		fi
		systemctl enable --now redis-server >/dev/null 2>&1
	elif systemctl is-enabled --quiet redis-server 2>/dev/null || systemctl is-active --quiet redis-server; then
		log "Redis: disabling redis-server (the Nomad job redis uses port 6379; --systemd keeps it)"
		systemctl disable --now redis-server >/dev/null 2>&1 || true
	fi
fi

if [ "$SYSTEMD" -eq 1 ]; then
	log "systemd units llm-gateway, llm-orchestrator and $ENV_FILE"
	id llm-switchboard >/dev/null 2>&1 ||
		useradd --system --home-dir "$PREFIX" --no-create-home --shell /usr/sbin/nologin llm-switchboard
	install_unit llm-gateway.service
	install_unit llm-orchestrator.service
	if [ ! -e "$ENV_FILE" ]; then
		install -m 0640 -o root -g llm-switchboard "$REPO/deploy/.env.example" "$ENV_FILE"
		log "wrote $ENV_FILE: set GATEWAY_API_KEY and GATEWAY_ADMIN_API_KEY in it"
	fi
fi

if [ "$JUPYTER" -eq 1 ]; then
	JHOME=$(getent passwd "$JUPYTER_USER" | cut -d: -f6)
	JVENV=$JHOME/.venvs/jupyterlab
	if [ ! -x "$JVENV/bin/jupyter" ]; then
		log "JupyterLab into $JVENV"
		sudo -u "$JUPYTER_USER" python3 -m venv "$JVENV" || die "python3 -m venv $JVENV failed (apt-get install python3-venv)"
		sudo -u "$JUPYTER_USER" "$JVENV/bin/pip" install -q --upgrade pip jupyterlab openai ||
			die "pip install jupyterlab failed"
	fi
	install_unit jupyter@.service
	[ "$UNITS_CHANGED" -eq 0 ] || systemctl daemon-reload
	systemctl enable --now "jupyter@$JUPYTER_USER" >/dev/null 2>&1 ||
		die "jupyter@$JUPYTER_USER did not start: journalctl -u jupyter@$JUPYTER_USER"
	log "JupyterLab: jupyter@$JUPYTER_USER on 127.0.0.1:8888 (scripts/setup_tailscale_serve_jupyter.sh for the tailnet)"
fi
[ "$UNITS_CHANGED" -eq 0 ] || systemctl daemon-reload

DEVICE_BLOCK='# gpu_mode = "device" needs the NVIDIA device plugin: install_prereqs.sh --device-plugin'
if [ -x /opt/nomad/plugins/nomad-device-nvidia ]; then
	DEVICE_BLOCK='plugin "nomad-device-nvidia" {
  config {
    enabled = true
  }
}'
fi

log "Nomad client configuration"
NOMAD_CHANGED=0
write_file /etc/nomad.d/client.hcl 0644 <<HCL && NOMAD_CHANGED=1
# Written by llm-switchboard scripts/install_prereqs.sh; see jobs.nomad.d/README.md.
plugin_dir = "/opt/nomad/plugins"

client {
  enabled = true

  # vllm.nomad.hcl asks for kill_timeout 90s so vLLM frees the GPU memory
  # before SIGKILL; Nomad caps it at this (default 30s).
  max_kill_timeout = "120s"

  # gpu_mode = "runtime" pins model jobs to the node with meta.gpu.
  meta {
    gpu = "gb10"
  }

  host_volume "redis-data" {
    path      = "$PREFIX/redis"
    read_only = false
  }
}

acl {
  enabled = true
}

plugin "raw_exec" {
  config {
    enabled = true
  }
}

plugin "docker" {
  config {
    allow_runtimes = ["runc", "nvidia"]

    volumes {
      enabled = true
    }
  }
}

$DEVICE_BLOCK
HCL

log "Consul configuration"
CONSUL_CHANGED=0
write_file /etc/consul.d/llm-switchboard.hcl 0640 <<'HCL' && CONSUL_CHANGED=1
# Written by llm-switchboard scripts/install_prereqs.sh: one-node server.
server           = true
bootstrap_expect = 1
client_addr      = "127.0.0.1"
bind_addr        = "{{ GetPrivateInterfaces | include \"flags\" \"up\" | attr \"address\" }}"

ui_config {
  enabled = true
}

acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}
HCL
chown -R consul:consul /etc/consul.d 2>/dev/null || true

systemctl enable nomad consul >/dev/null 2>&1 || true
if [ "$NOMAD_CHANGED" -eq 1 ] && systemctl is-active --quiet nomad; then
	log "restarting nomad for the new configuration"
	systemctl restart nomad
fi
if [ "$CONSUL_CHANGED" -eq 1 ] && systemctl is-active --quiet consul; then
	log "restarting consul for the new configuration"
	systemctl restart consul
fi

cat <<DONE

Done. Next:
  1. check $PREFIX/configs/gateway.hcl (nomad.namespace = "llm") and models.hcl
  2. scripts/pull_vllm_image.sh && scripts/download_models.sh
  3. sudo scripts/start_all.sh --terraform terraform/dgx.tfvars   # or --nomad, or --systemd
  4. GATEWAY_API_KEY=... scripts/smoke_test.sh
  5. sudo tailscale up; scripts/setup_tailscale_funnel.sh; scripts/print_tailscale_urls.sh
GPU access: $( [ -x /opt/nomad/plugins/nomad-device-nvidia ] && echo 'device plugin installed (gpu_mode = "device")' || echo 'no device plugin: set variables = { gpu_mode = "runtime" } per model in configs/models.hcl, or rerun with --device-plugin')
DONE
