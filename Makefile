# provision — the two commands a newcomer runs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/provision
PKGS      := ./...
FUZZTIME  ?= 60s
export CGO_ENABLED ?= 0

.PHONY: all build test unit fuzz demo bench lint deps clean golden golden-test

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
# bench/swarm emulates labs of 30 and 59 nodes and needs root (-sizes 159
# for Swarm2k's 15 VMs and 4 racks); bench/swarm2k runs up to 2,384 fake
# engines; bench/preflight runs the Proxmox simulator on loopback.
bench: build
	$(GO) run ./bench/render
	$(GO) run ./bench/preflight
	$(GO) run ./bench/swarm
	$(GO) run ./bench/swarm2k
	$(GO) run ./bench/image
	$(GO) run ./bench/flash

# The Raspberry Pi golden image (root; Debian packages from `make deps`).
# `make golden` builds the Debian root filesystem with mmdebstrap under
# qemu-user (internal/rpi/rootfs) into $(GOLDEN_IMAGE), with its sha256,
# block map and manifest; `make golden-test` boots it under
# qemu-system-aarch64 -M virt with a seed for one Pi of the inventory and
# checks the node over the serial console (internal/rpi/smoke).
GOLDEN_DIR   ?= out/golden
GOLDEN_INV   ?= inventory/example.yaml
# The build's SOURCE_DATE_EPOCH: the last commit that changed its inputs.
GOLDEN_EPOCH ?= $(shell git log -1 --format=%ct -- internal/rpi templates images 2>/dev/null || echo 1764460800)
GOLDEN_BUILD  = $(GO) run ./internal/rpi/cmd/golden-rootfs -out $(GOLDEN_DIR) -epoch $(GOLDEN_EPOCH)
GOLDEN_IMAGE ?= $(GOLDEN_DIR)/rootfs.ext4
GOLDEN_TIMEOUT ?= 15m

golden:
	$(GOLDEN_BUILD)

golden-test:
	$(GO) run ./internal/rpi/cmd/golden-test -image $(GOLDEN_IMAGE) -i $(GOLDEN_INV) -timeout $(GOLDEN_TIMEOUT)

lint:
	@test -z "$$(gofmt -l cmd internal templates bench)" || { gofmt -l cmd internal templates bench; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)

clean:
	rm -rf bin out .provision
