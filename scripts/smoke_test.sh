#!/usr/bin/env bash
# Check a running switchboard end to end: /health, /v1/models and one chat
# completion. Exits non-zero on the first failure, saying what failed.
set -euo pipefail

GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:8000}
MODEL=${MODEL:-}
TIMEOUT=${TIMEOUT:-900}

usage() {
	cat <<USAGE
Usage: GATEWAY_API_KEY=... $0 [-m MODEL]

  -m MODEL    model for the chat completion [the first one /v1/models lists]
  -h          this help

Environment: GATEWAY_URL [$GATEWAY_URL], GATEWAY_API_KEY (required),
TIMEOUT for the completion in seconds [$TIMEOUT]: it may wait for a model
switch, which takes minutes.
USAGE
}

fail() { echo "smoke_test: FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

while getopts ":m:h" opt; do
	case "$opt" in
	m) MODEL=$OPTARG ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[ -n "${GATEWAY_API_KEY:-}" ] || fail "set GATEWAY_API_KEY to a user key of the gateway"
for cmd in curl jq; do command -v "$cmd" >/dev/null || fail "$cmd not found"; done
GATEWAY_URL=${GATEWAY_URL%/}
BODY=$(mktemp)
trap 'rm -f "$BODY"' EXIT

# request METHOD PATH [DATA] [MAX_TIME]: prints the HTTP status, body in $BODY.
request() {
	local args=(-sS -o "$BODY" -w '%{http_code}' -X "$1" --max-time "${4:-30}"
		-H "Authorization: Bearer $GATEWAY_API_KEY")
	[ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' --data "$3")
	curl "${args[@]}" "$GATEWAY_URL$2" || true
}

status=$(request GET /health)
[ "$status" = 200 ] || fail "GET /health answered $status: $(head -c 300 "$BODY")"
ok "GET /health"

status=$(request GET /v1/models)
[ "$status" = 200 ] || fail "GET /v1/models answered $status: $(head -c 300 "$BODY")"
jq -e '.object == "list" and (.data | length) > 0' "$BODY" >/dev/null || fail "GET /v1/models: no models listed: $(head -c 300 "$BODY")"
[ -n "$MODEL" ] || MODEL=$(jq -r '.data[0].id' "$BODY")
ok "GET /v1/models ($(jq -r '[.data[].id] | join(", ")' "$BODY"))"

payload=$(jq -nc --arg m "$MODEL" '{model: $m, max_tokens: 16, messages: [{role: "user", content: "Say hello in one word."}]}')
status=$(request POST /v1/chat/completions "$payload" "$TIMEOUT")
[ "$status" = 200 ] || fail "POST /v1/chat/completions ($MODEL) answered $status: $(head -c 500 "$BODY")"
jq -e '.choices[0].message | has("content")' "$BODY" >/dev/null || fail "chat completion without a message: $(head -c 500 "$BODY")"
ok "POST /v1/chat/completions ($MODEL): $(jq -r '.choices[0].message.content // "" | gsub("\n"; " ") | .[0:60]' "$BODY")"

echo "smoke test passed against $GATEWAY_URL"
