# shellcheck shell=bash
# Shared by download_models.sh and pull_vllm_image.sh: where the config is,
# and the configured models as JSON (`switchboard config models -json`).
# The caller sets REPO, PREFIX and CONFIG (empty: the default) and defines die.

# resolve_config sets CONFIG to the installed config, else the repository's.
resolve_config() {
	if [ -z "$CONFIG" ]; then
		CONFIG=$PREFIX/configs/gateway.hcl
		[ -r "$CONFIG" ] || CONFIG=$REPO/configs/gateway.hcl
	fi
}

# models_json prints the configured models of CONFIG as a JSON array.
models_json() {
	local bin="${SWITCHBOARD_BIN:-}" c
	if [ -z "$bin" ]; then
		for c in "$PREFIX/bin/switchboard" "$REPO/bin/switchboard"; do
			if [ -x "$c" ]; then
				bin=$c
				break
			fi
		done
	fi
	if [ -z "$bin" ]; then
		bin=$(command -v switchboard) || die "no switchboard binary: set SWITCHBOARD_BIN or run 'make build'"
	fi
	"$bin" config models -config "$CONFIG" -json || die "'$bin config models -config $CONFIG -json' failed (see above)"
}
