# raftkv — the two commands a newcomer needs: `make run` and `make test`.
GO        ?= go
BIN       := bin/raftkv
PKGS      := ./...
GOLANGCI  := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
FUZZTIME  ?= 30s

.PHONY: all build run run-secure test test-short fuzz lint fmt-check vet cover bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/raftkv

## run: NODES nodes (default 3) on 127.0.0.1:8001-800N (raft 9001-900N),
## data in ./data: make run NODES=5.
NODES ?= 3
run: build
	NODES=$(NODES) ./scripts/run-cluster.sh

## run-secure: run with TLS and ACLs: https on the same ports; on first use
## it writes data/tls/ (raftkv cert) and data/root-token (the root token).
run-secure: build
	RAFTKV_RUN_SECURE=1 ./scripts/run-cluster.sh

## test: formatting, vet, and every test with the race detector (the fuzz
## targets' seed corpora run as ordinary tests).
test: fmt-check vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -count=1 $(PKGS)

## fuzz: run each fuzz target for FUZZTIME.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeCommand -fuzztime=$(FUZZTIME) ./store
	$(GO) test -run='^$$' -fuzz=FuzzHandler -fuzztime=$(FUZZTIME) ./httpapi
	$(GO) test -run='^$$' -fuzz=FuzzTokenRequest -fuzztime=$(FUZZTIME) ./httpapi
	$(GO) test -run='^$$' -fuzz=FuzzParseBearer -fuzztime=$(FUZZTIME) ./kv
	$(GO) test -run='^$$' -fuzz=FuzzDecodeRequest -fuzztime=$(FUZZTIME) ./internal/forward
	$(GO) test -run='^$$' -fuzz=FuzzDecodeResponse -fuzztime=$(FUZZTIME) ./internal/forward

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

lint:
	$(GO) run $(GOLANGCI) run $(PKGS)

cover:
	$(GO) test -count=1 -coverprofile=cover.out $(PKGS)
	$(GO) tool cover -func=cover.out | tail -1

## bench: a fresh three-node cluster on ports 18000-19003 under wrk and
## raftkv bench, measured against the HTTP ceiling; prints one table.
bench: build
	./scripts/bench.sh

## chaos: the fault harness (internal/chaos, docs/chaos.md) at length: every
## fault for CHAOS_DURATION, CHAOS_ROUNDS rounds on fresh clusters, each with
## the linearizability check and the watch check (watchers on every node and
## through the Go client against the committed history), and the lock check
## (TestLockMutualExclusionUnderFaults: fenced writes under faults), and, as root
## on Linux, the separate-hosts harness (TestHostFaults, TestHostsMembership,
## TestHostsReaddress: a network namespace per node, partitions made by a
## router namespace; members added, promoted, removed, replaced and moved
## during them; skipped, saying why, elsewhere). A failure prints its seed: CHAOS_SEED=<seed> replays
## the same choices.
## First, the state machine's determinism property (store.TestDeterminism)
## on DETERMINISM_SEEDS random logs of DETERMINISM_ENTRIES entries each; a
## failure prints the go test line that replays its seed. It runs one
## goroutine, so without -race.
CHAOS_DURATION ?= 30s
CHAOS_ROUNDS   ?= 3
CHAOS_SEED     ?= 0
DETERMINISM_SEEDS   ?= 60
DETERMINISM_ENTRIES ?= 50000
.PHONY: chaos
chaos:
	$(GO) test -count=1 -timeout 60m -v -run 'TestDeterminism$$' ./store \
		-determinism.long -determinism.seeds=$(DETERMINISM_SEEDS) -determinism.entries=$(DETERMINISM_ENTRIES)
	$(GO) test -race -count=1 -timeout 150m -v -run . ./internal/chaos \
		-chaos.duration=$(CHAOS_DURATION) -chaos.rounds=$(CHAOS_ROUNDS) -chaos.seed=$(CHAOS_SEED)

clean:
	rm -rf bin data cover.out
