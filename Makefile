# Tagway — `make run` and `make test` are all a newcomer needs.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# make run's demo API key (the README's curl example uses it). Override it:
# make run TAGWAY_DEMO_KEY=…
TAGWAY_DEMO_KEY ?= tw_demo_key
FUZZTIME ?= 60s
BENCHTIME ?= 10s

.PHONY: help run build test test-short bench fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## run the gateway on its embedded defaults (demo site, embedded NATS and Badger in ./data)
	TAGWAY_DEMO_KEY=$(TAGWAY_DEMO_KEY) $(GO) run -ldflags "$(LDFLAGS)" ./cmd/tagway serve --log-format text

build: ## build bin/tagway
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/tagway ./cmd/tagway

test: ## vet and run every test with the race detector, then the memory-bound test without it
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'TestMemoryBound' -v ./gateway/dedup/

test-short: ## the tests without the ones that build and kill a process
	$(GO) test -short -count=1 ./...

bench: ## Go benchmarks of the hot paths, then the load test against its baselines (report in bench/results/)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./cmd/tagway-load --duration $(BENCHTIME)

fuzz: ## run each fuzz target (batch parsers, consent decoders, consent state, audit and dedup records, segment state and rules, PubAcks) for FUZZTIME (default 60s)
	$(GO) test -run '^$$' -fuzz '^FuzzServerBatch$$' -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz '^FuzzBrowserBatch$$' -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeTCF$$' -fuzztime $(FUZZTIME) ./consent/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeGPP$$' -fuzztime $(FUZZTIME) ./consent/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeUSP$$' -fuzztime $(FUZZTIME) ./consent/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeConsentState$$' -fuzztime $(FUZZTIME) ./consent/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(FUZZTIME) ./segments/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePred$$' -fuzztime $(FUZZTIME) ./segments/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./consent/audit/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeDedupRecord$$' -fuzztime $(FUZZTIME) ./gateway/dedup/
	$(GO) test -run '^$$' -fuzz '^FuzzParseAck$$' -fuzztime $(FUZZTIME) ./gateway/bus/

clean: ## remove build output and the demo data directory
	rm -rf bin data
