#!/usr/bin/env bash
# Check a running switchboard end to end, through its public API only:
#   1 GET /health            2 GET /v1/models
#   3 one sync chat completion                 4 one streaming one (ends with data: [DONE])
#   5 one async job: 202, /jobs/{id} until succeeded, /jobs/{id}/result
#   6 one cancel: async job for model B, canceled (or 409 when it finished first)
#   7 a switch: a request for model B, then /status (or /health) shows B active
# Exits non-zero on the first failure, saying which step failed and what it
# got. Needs only bash and curl (no jq, no python). Safe to run again: it
# only makes requests. `make test` runs it against the embedded stack
# (cmd/switchboard/e2e_smoke_test.go).
set -euo pipefail

GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:8000}
# A request that needs a model switch waits minutes on the DGX (load time).
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-900}
# Requests that never wait for a model.
SMOKE_SHORT_TIMEOUT=${SMOKE_SHORT_TIMEOUT:-15}

usage() {
	cat <<USAGE
Usage: $0 [-h]

Checks, in order: /health, /v1/models, a sync chat completion, a streaming
one, an async job (status and result), a cancel, and a switch to a second
model. Stops at the first failure with a non-zero exit.

Environment:
  GATEWAY_URL            gateway base URL [$GATEWAY_URL]
  GATEWAY_API_KEY        user key (the first of a comma-separated list is
                         used); empty: requests carry no key (a loopback
                         gateway without keys)
  GATEWAY_ADMIN_API_KEY  admin key for /status (else /health is used)
  SMOKE_MODEL_A          first model [from \$SWITCHBOARD_BIN, else qwen3-30b]
  SMOKE_MODEL_B          second model, the switch target [from
                         \$SWITCHBOARD_BIN, else gpt-oss120]
  SWITCHBOARD_BIN        switchboard binary: when set, the models default to
                         the first two of '\$SWITCHBOARD_BIN config models'
  SWITCHBOARD_CONFIG     gateway.hcl for that command [its default]
  SMOKE_TIMEOUT          seconds for a request that may wait for a switch
                         [$SMOKE_TIMEOUT]
  SMOKE_SHORT_TIMEOUT    seconds for every other request [$SMOKE_SHORT_TIMEOUT]
USAGE
}

case "${1:-}" in
"") ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; echo "smoke_test: unknown argument: $1" >&2; exit 2 ;;
esac

STEP="setup"
fail() {
	echo "smoke_test: FAIL at step $STEP: $*" >&2
	exit 1
}
ok() { echo "ok   $STEP: $*"; }

command -v curl >/dev/null || fail "curl not found (apt-get install curl)"
for v in SMOKE_TIMEOUT SMOKE_SHORT_TIMEOUT; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v must be a number of seconds, got '${!v}'"
done
GATEWAY_URL=${GATEWAY_URL%/}

# first_key LIST: the first key of a comma-separated list, trimmed.
first_key() {
	local k=${1%%,*}
	k=${k#"${k%%[![:space:]]*}"}
	k=${k%"${k##*[![:space:]]}"}
	printf '%s' "$k"
}
USER_KEY=$(first_key "${GATEWAY_API_KEY:-}")
ADMIN_KEY=$(first_key "${GATEWAY_ADMIN_API_KEY:-}")
# An admin key may do everything a user key may.
[ -n "$USER_KEY" ] || USER_KEY=$ADMIN_KEY

# Models: explicit env, else the first two of the binary's config, else
# the defaults of configs/models.hcl.
MODEL_A=${SMOKE_MODEL_A:-}
MODEL_B=${SMOKE_MODEL_B:-}
if { [ -z "$MODEL_A" ] || [ -z "$MODEL_B" ]; } && [ -n "${SWITCHBOARD_BIN:-}" ]; then
	cfg=()
	[ -z "${SWITCHBOARD_CONFIG:-}" ] || cfg=(-config "$SWITCHBOARD_CONFIG")
	if listed=$("$SWITCHBOARD_BIN" config models "${cfg[@]}" 2>/dev/null | cut -f1 | head -2); then
		[ -n "$MODEL_A" ] || MODEL_A=$(sed -n 1p <<<"$listed")
		[ -n "$MODEL_B" ] || MODEL_B=$(sed -n 2p <<<"$listed")
	else
		echo "smoke_test: warning: '$SWITCHBOARD_BIN config models' failed; using the default models" >&2
	fi
fi
MODEL_A=${MODEL_A:-qwen3-30b}
MODEL_B=${MODEL_B:-gpt-oss120}
[ "$MODEL_A" != "$MODEL_B" ] || fail "SMOKE_MODEL_A and SMOKE_MODEL_B are both '$MODEL_A': the switch step needs two models"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BODY=$WORK/body
HDRS=$WORK/headers
ERR=$WORK/curl.err
CODE=""

# req METHOD PATH MAX_TIME [DATA] [KEY]: one request; sets CODE to the HTTP
# status (or to "curl error: ..."), the body is in $BODY, headers in $HDRS.
req() {
	local method=$1 path=$2 max=$3 data=${4:-} key=${5-$USER_KEY}
	local args=(-sS -N -o "$BODY" -D "$HDRS" -w '%{http_code}' -X "$method" --max-time "$max")
	[ -z "$key" ] || args+=(-H "Authorization: Bearer $key")
	[ -z "$data" ] || args+=(-H 'Content-Type: application/json' --data "$data")
	: >"$BODY"
	if ! CODE=$(curl "${args[@]}" "$GATEWAY_URL$path" 2>"$ERR"); then
		CODE="curl error: $(tr '\n' ' ' <"$ERR" | head -c 300)"
	fi
}

# got: what the last request answered, for failure messages.
got() {
	case "$CODE" in
	curl*) printf '%s' "$CODE" ;;
	*) printf 'HTTP %s: %s' "$CODE" "$(tr '\n' ' ' <"$BODY" | head -c 400)" ;;
	esac
}

# expect CODE...: fail unless the last request answered one of them.
expect() {
	local c
	for c in "$@"; do
		[ "$CODE" = "$c" ] && return 0
	done
	fail "$METHOD_PATH: want HTTP $*, got $(got)"
}

# json_str KEY: the first string value of "KEY" in $BODY (flat grep, enough
# for the gateway's own answers).
json_str() {
	grep -oE "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" "$BODY" | head -1 |
		sed -E 's/^"[^"]*"[[:space:]]*:[[:space:]]*"//; s/"$//' || true
}

# chat MODEL [EXTRA]: a small chat completion body; EXTRA is appended
# inside the object (e.g. ,"stream":true).
chat() {
	printf '{"model":"%s","max_tokens":%s,"messages":[{"role":"user","content":"Say hello in one word."}]%s}' \
		"$1" "${SMOKE_MAX_TOKENS:-8}" "${2:-}"
}

echo "smoke test against $GATEWAY_URL (models $MODEL_A, $MODEL_B; key: $([ -n "$USER_KEY" ] && echo yes || echo none), admin key: $([ -n "$ADMIN_KEY" ] && echo yes || echo none))"

# 1. health
STEP="1/7 health"
METHOD_PATH="GET /health"
req GET /health "$SMOKE_SHORT_TIMEOUT"
expect 200
[ "$(json_str status)" = ok ] || fail "GET /health: status is not ok: $(got)"
ok "GET /health (active model: $(json_str active_model || true))"

# 2. models
STEP="2/7 models"
METHOD_PATH="GET /v1/models"
req GET /v1/models "$SMOKE_SHORT_TIMEOUT"
expect 200
grep -qE '"object"[[:space:]]*:[[:space:]]*"list"' "$BODY" || fail "GET /v1/models: not a list: $(got)"
for m in "$MODEL_A" "$MODEL_B"; do
	grep -qF "\"id\":\"$m\"" "$BODY" ||
		fail "GET /v1/models does not list '$m' (set SMOKE_MODEL_A/SMOKE_MODEL_B): $(got)"
done
ok "GET /v1/models lists $MODEL_A and $MODEL_B"

# 3. one sync chat completion
STEP="3/7 sync chat completion"
METHOD_PATH="POST /v1/chat/completions ($MODEL_A)"
req POST /v1/chat/completions "$SMOKE_TIMEOUT" "$(chat "$MODEL_A")"
expect 200
grep -q '"choices"' "$BODY" || fail "$METHOD_PATH: no choices: $(got)"
grep -q '"content"' "$BODY" || fail "$METHOD_PATH: no message content: $(got)"
[ "$(json_str model)" = "$MODEL_A" ] || fail "$METHOD_PATH: the answer names model '$(json_str model)', want '$MODEL_A'"
ok "$METHOD_PATH: \"$(json_str content)\""

# 4. one streaming chat completion
STEP="4/7 streaming chat completion"
METHOD_PATH="POST /v1/chat/completions stream ($MODEL_A)"
req POST /v1/chat/completions "$SMOKE_TIMEOUT" "$(chat "$MODEL_A" ',"stream":true')"
expect 200
grep -qi '^content-type:[[:space:]]*text/event-stream' "$HDRS" ||
	fail "$METHOD_PATH: not an event stream ($(grep -i '^content-type' "$HDRS" | tr -d '\r')): $(got)"
grep -q '^data: {' "$BODY" || fail "$METHOD_PATH: no data chunks: $(got)"
last=$(grep -v '^[[:space:]]*$' "$BODY" | tail -1 | tr -d '\r')
[ "$last" = "data: [DONE]" ] || fail "$METHOD_PATH: the stream does not end with 'data: [DONE]' (last line: '$last')"
ok "$METHOD_PATH: $(grep -c '^data: {' "$BODY") chunks, then data: [DONE]"

# 5. one async job: status, then result
STEP="5/7 async job"
METHOD_PATH="POST /v1/chat/completions async ($MODEL_A)"
req POST /v1/chat/completions "$SMOKE_SHORT_TIMEOUT" "$(chat "$MODEL_A" ',"async":true')"
expect 202
job=$(json_str id)
[[ "$job" =~ ^job_ ]] || fail "$METHOD_PATH: no job id in the answer: $(got)"
METHOD_PATH="GET /jobs/$job"
deadline=$((SECONDS + SMOKE_TIMEOUT))
while :; do
	req GET "/jobs/$job" "$SMOKE_SHORT_TIMEOUT"
	expect 200
	status=$(json_str status)
	case "$status" in
	succeeded) break ;;
	queued | running) ;;
	*) fail "$METHOD_PATH: job ended '$status': $(got)" ;;
	esac
	[ "$SECONDS" -lt "$deadline" ] || fail "$METHOD_PATH: still '$status' after ${SMOKE_TIMEOUT}s"
	sleep 0.5
done
METHOD_PATH="GET /jobs/$job/result"
req GET "/jobs/$job/result" "$SMOKE_SHORT_TIMEOUT"
expect 200
grep -q '"choices"' "$BODY" || fail "$METHOD_PATH: no choices in the result: $(got)"
ok "job $job succeeded, result: \"$(json_str content)\""

# 6. one cancel: a job for the other model waits for a switch, so it is
# usually still queued; if it finished first the gateway answers 409.
STEP="6/7 cancel"
METHOD_PATH="POST /v1/chat/completions async ($MODEL_B)"
req POST /v1/chat/completions "$SMOKE_SHORT_TIMEOUT" "$(chat "$MODEL_B" ',"async":true')"
expect 202
job=$(json_str id)
[[ "$job" =~ ^job_ ]] || fail "$METHOD_PATH: no job id in the answer: $(got)"
METHOD_PATH="POST /jobs/$job/cancel"
req POST "/jobs/$job/cancel" "$SMOKE_SHORT_TIMEOUT"
expect 200 409
if [ "$CODE" = 409 ]; then
	ok "job $job had already finished (409 job_finished)"
else
	# A running job is aborted asynchronously: wait for a final state.
	METHOD_PATH="GET /jobs/$job"
	deadline=$((SECONDS + 60))
	while :; do
		status=$(json_str status)
		case "$status" in
		canceled) ok "job $job canceled"; break ;;
		succeeded) ok "job $job finished before the abort landed"; break ;;
		queued | running) ;;
		*) fail "$METHOD_PATH: canceled job ended '$status': $(got)" ;;
		esac
		[ "$SECONDS" -lt "$deadline" ] || fail "$METHOD_PATH: still '$status' 60s after the cancel"
		sleep 0.5
		req GET "/jobs/$job" "$SMOKE_SHORT_TIMEOUT"
		expect 200
	done
fi

# 7. a switch: ask for model B, then check that it is the active model.
STEP="7/7 switch"
METHOD_PATH="POST /v1/chat/completions ($MODEL_B)"
req POST /v1/chat/completions "$SMOKE_TIMEOUT" "$(chat "$MODEL_B")"
expect 200
[ "$(json_str model)" = "$MODEL_B" ] || fail "$METHOD_PATH: the answer names model '$(json_str model)', want '$MODEL_B'"
wait_ms=$(grep -i '^x-switchboard-wait-ms:' "$HDRS" | tr -d '\r' | sed 's/^[^:]*:[[:space:]]*//' || true)
if [ -n "$ADMIN_KEY" ]; then
	METHOD_PATH="GET /status (admin key)"
	req GET /status "$SMOKE_SHORT_TIMEOUT" "" "$ADMIN_KEY"
else
	METHOD_PATH="GET /status"
	req GET /status "$SMOKE_SHORT_TIMEOUT"
	if [ "$CODE" = 403 ]; then
		# A user key may not read /status; /health names the active model too.
		METHOD_PATH="GET /health (no admin key for /status)"
		req GET /health "$SMOKE_SHORT_TIMEOUT"
	fi
fi
expect 200
active=$(json_str active_model)
[ "$active" = "$MODEL_B" ] || fail "$METHOD_PATH: active model is '$active', want '$MODEL_B': $(got)"
ok "$MODEL_B answered (waited ${wait_ms:-?} ms) and is the active model ($METHOD_PATH)"

echo "smoke test passed against $GATEWAY_URL"
