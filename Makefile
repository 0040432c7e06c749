# lmrun — build, demo and test targets. `make help` lists them.
GO      ?= go
BIN     ?= bin/lmrun
PKGS    := ./...

.PHONY: help build demo test test-arm64 vet fmt-check race fuzz bench cross clean

help:
	@echo "make demo   generate text with a synthesized stories15M-shaped model (go run ./cmd/lmrun demo)"
	@echo "make test   vet, gofmt check, the whole test suite, and the race detector on the engine"
	@echo "make test-arm64  the kernels and the engine built for arm64 (NEON backend), under qemu-user on other hosts"
	@echo "make fuzz   run every fuzz target for a short while"
	@echo "make bench  go test benchmarks"
	@echo "make cross  build for every supported GOOS/GOARCH, with and without -tags purego"

build:
	$(GO) build -o $(BIN) ./cmd/lmrun

demo:
	$(GO) run ./cmd/lmrun demo

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

race:
	$(GO) test -race -count=1 $(PKGS)

# The README's test command is `go test ./...`; this adds the house checks around it.
test: vet fmt-check
	$(GO) test -count=1 $(PKGS)
	$(MAKE) race

# The arm64 build — the NEON backend (backends/neon) against the reference, and every
# fixture model on it — natively on an arm64 host, elsewhere under qemu-user
# (apt-get install qemu-user-static; -exec needs no binfmt registration).
ARM64_PKGS ?= ./backends/... ./engine/ ./kernels/...
test-arm64:
ifeq ($(shell $(GO) env GOHOSTARCH),arm64)
	$(GO) test -count=1 $(ARM64_PKGS)
else
	GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static $(ARM64_PKGS)
endif

FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run XXX -bench . -benchmem $(PKGS)

cross:
	@for t in linux/amd64 linux/arm64 darwin/arm64 darwin/amd64 windows/amd64 linux/386 linux/riscv64 linux/s390x; do \
	  for tags in "" purego; do \
	    echo "GOOS/GOARCH=$$t tags=$$tags"; \
	    GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet -tags "$$tags" $(PKGS) || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
