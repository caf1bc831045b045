# llm-switchboard. CI only calls `make test` (through .ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO            ?= go
BIN           := bin/switchboard
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -s -w -X main.version=$(VERSION)
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
HCLFMT        := github.com/hashicorp/hcl/v2/cmd/hclfmt@v2.25.0
HCL_FILES      = $(shell find configs jobs.nomad.d terraform -type f \( -name '*.hcl' -o -name '*.tf' \) 2>/dev/null)
SHELL_FILES    = $(shell find scripts .ci -type f \( -name '*.sh' -o -name run \) 2>/dev/null)

.PHONY: bench fuzz-short test-faults test-real build build-arm64 run test fmt-check vet lint tidy-check check-deps hcl-check shellcheck go-test clean

build: ## build bin/switchboard for this machine
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchboard

build-arm64: ## cross-compile for linux/arm64 (DGX Spark)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)-linux-arm64 ./cmd/switchboard

run: build ## start the embedded all-in-one mode on 127.0.0.1:8000
	./$(BIN) dev

test: fmt-check vet lint tidy-check check-deps hcl-check shellcheck go-test fuzz-short ## everything CI checks

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint:
	$(GO) run $(STATICCHECK) ./...

tidy-check:
	$(GO) mod tidy -diff

# The gateway and the orchestrator meet only in Redis; only the adapters
# speak to Nomad and Consul.
check-deps:
	@fail=0; \
	if $(GO) list -deps ./gateway/... | grep -q 'llm-switchboard/orchestrator'; then echo "gateway imports orchestrator"; fail=1; fi; \
	if $(GO) list -deps ./orchestrator | grep -q 'llm-switchboard/gateway'; then echo "orchestrator imports gateway"; fail=1; fi; \
	for p in $$($(GO) list ./... | grep -vE '/orchestrator/nomadrt|/internal/testutil/'); do \
		if $(GO) list -f '{{join .Imports "\n"}}' $$p | grep -q '^github.com/hashicorp/nomad/api'; then echo "$$p imports nomad/api (only nomadrt may)"; fail=1; fi; \
	done; \
	for p in $$($(GO) list ./... | grep -vE '/orchestrator/consullock|/internal/consulsvc|/internal/testutil/'); do \
		if $(GO) list -f '{{join .Imports "\n"}}' $$p | grep -q '^github.com/hashicorp/consul/api'; then echo "$$p imports consul/api (only consullock and consulsvc may)"; fail=1; fi; \
	done; \
	if $(GO) list -m all | grep -qE '^github.com/hashicorp/nomad '; then echo "depends on the nomad root module (licence)"; fail=1; fi; \
	exit $$fail

hcl-check:
	@[ -z "$(HCL_FILES)" ] || $(GO) run $(HCLFMT) -check -require-no-change $(HCL_FILES) >/dev/null

shellcheck:
	@[ -z "$(SHELL_FILES)" ] || shellcheck $(SHELL_FILES)

go-test:
	$(GO) test -race -count=1 -timeout 15m ./...

# Every benchmark, each against its baseline from the same run (a few
# minutes; docs/benchmarks.md). Each one bounds its own sample, so keep
# -benchtime 1x; BENCH narrows it, e.g. make bench BENCH=Overhead.
BENCH ?= .
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 15m ./cmd/switchboard/ ./orchestrator/ ./orchestrator/scheduler/sim/

# The fault-injection suite in its long form: the full multi-process stack
# (2 gateways, leader + standby, fakes, redis-server, mockllm), every fault
# of docs/faults.md, the leader SIGKILLed ~20 times. make test runs the
# short form (go-test). FAULTS_LOGS=1 dumps every process log.
FAULTS_LOG ?= $(or $(TMPDIR),/tmp)/llm-switchboard-faults.log
test-faults:
	@echo "full log: $(FAULTS_LOG)"
	$(GO) test -race -count=1 -timeout 30m -v -run TestFaultSuite ./cmd/switchboard/ -faults.full 2>&1 \
		| tee $(FAULTS_LOG) | grep -E '^ *(--- |FAIL|ok|PASS)|FAULT SUITE|fault suite summary|INVARIANT|panic'

# Request parsing fuzzed briefly on every run (longer: FUZZTIME=5m).
FUZZTIME ?= 10s
fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzInspectRequest$$' -fuzztime $(FUZZTIME) ./internal/openai/
	$(GO) test -run '^$$' -fuzz '^FuzzRewriteRequest$$' -fuzztime $(FUZZTIME) ./internal/openai/

# Contract tests against real Nomad and Consul dev agents (raw_exec enabled);
# see the README. They run the same suites the fakes pass.
test-real:
	@if [ -z "$$NOMAD_ADDR" ] || [ -z "$$CONSUL_HTTP_ADDR" ]; then \
		echo "set NOMAD_ADDR and CONSUL_HTTP_ADDR to Nomad and Consul dev agents (see README: Contract tests)"; exit 2; fi
	$(GO) test -count=1 -v -run 'RealAgent' ./orchestrator/nomadrt/ ./orchestrator/consullock/

clean:
	rm -rf bin
