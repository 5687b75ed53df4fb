# provision — the two commands a newcomer runs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/provision
PKGS      := ./...
FUZZTIME  ?= 60s
export CGO_ENABLED ?= 0

.PHONY: all build test unit fuzz demo bench lint deps clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/provision

# Debian packages the tests and the demo use (root; CI runs this via .ci/run).
deps:
	scripts/install-deps.sh

# All tests: unit, golden, integration against the real tools, then the
# inventory parser fuzzed for $(FUZZTIME).
test: unit fuzz

unit:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 45m $(PKGS)

fuzz:
	$(GO) test ./internal/inventory -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)

demo: build
	scripts/demo.sh

# Each benchmark prints provision's figure beside an anchor's, as a ratio.
# bench/swarm emulates 159 nodes and needs root; bench/preflight runs the
# Proxmox simulator on loopback.
bench: build
	$(GO) run ./bench/render
	$(GO) run ./bench/preflight
	$(GO) run ./bench/swarm
	$(GO) run ./bench/image
	$(GO) run ./bench/flash

lint:
	@test -z "$$(gofmt -l cmd internal templates bench)" || { gofmt -l cmd internal templates bench; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)

clean:
	rm -rf bin out .provision
