# provision — the two commands a newcomer runs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/provision
PKGS      := ./...
# Fuzzing budgets in executions (about a minute each on 2 cores), not in
# time: Go 1.26's fuzz coordinator can fail a run whose -fuzztime deadline
# expires while a worker is busy ("context deadline exceeded", no crasher;
# golang/go#75804, fixed in Go 1.27). A count has no deadline to race.
FUZZ_INVENTORY ?= 800000x
FUZZ_TFTP      ?= 1200000x
export CGO_ENABLED ?= 0

.PHONY: all build test unit fuzz demo bench lint deps clean golden golden-test netboot-test

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/provision

# Debian packages the tests and the demo use (root; CI runs this via .ci/run).
deps:
	scripts/install-deps.sh

# All tests: unit, golden, integration against the real tools, then the
# inventory parser and the TFTP request parser fuzzed ($(FUZZ_INVENTORY) and
# $(FUZZ_TFTP) executions).
test: unit fuzz

unit:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 45m $(PKGS)

fuzz:
	$(GO) test ./internal/inventory -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_INVENTORY)
	$(GO) test ./internal/rpi/netboot -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZ_TFTP)

demo: build
	scripts/demo.sh

# Each benchmark prints provision's figure beside an anchor's, as a ratio.
# bench/swarm emulates labs of 30 and 59 nodes and needs root (-sizes 159
# for Swarm2k's 15 VMs and 4 racks); bench/swarm2k runs up to 2,384 fake
# engines; bench/preflight runs the Proxmox simulator on loopback;
# bench/tftp runs provision's TFTP server and dnsmasq's on loopback (root:
# dnsmasq binds port 69); bench/discover sweeps 127.20.0.0/16 against nmap;
# bench/apply runs apply on a 159-node emulated lab, the Pis netbooted (root);
# bench/hosts prepares an emulated BYO host by `hosts apply` and by an Ansible
# play (root, ansible).
bench: build
	$(GO) run ./bench/render
	$(GO) run ./bench/preflight
	$(GO) run ./bench/swarm
	$(GO) run ./bench/swarm2k
	$(GO) run ./bench/image
	$(GO) run ./bench/flash
	$(GO) run ./bench/tftp
	$(GO) run ./bench/discover
	$(GO) run ./bench/apply
	$(GO) run ./bench/hosts

# The Raspberry Pi golden image (root; Debian packages from `make deps`).
# `make golden` is `provision image build --image debian-pi4`: the Debian
# root filesystem by mmdebstrap under qemu-user, assembled without mount or
# loop device into $(GOLDEN_IMAGE) with its block map, sha256 and manifest
# (reused while the inputs are the same). `make golden-test` boots it under
# qemu-system-aarch64 -M virt with a seed for one Pi of the inventory and
# checks the node over the serial console (internal/rpi/smoke).
GOLDEN_DIR   ?= out/golden
GOLDEN_INV   ?= inventory/example.yaml
GOLDEN_NAME  ?= debian-pi4
# The build's SOURCE_DATE_EPOCH: the last commit that changed its inputs.
GOLDEN_EPOCH ?= $(shell git log -1 --format=%ct -- internal/rpi templates images 2>/dev/null || echo 1764460800)
GOLDEN_IMAGE ?= $(GOLDEN_DIR)/images/$(GOLDEN_NAME)/$(GOLDEN_NAME).img
GOLDEN_TIMEOUT ?= 15m

golden: build
	SOURCE_DATE_EPOCH=$(GOLDEN_EPOCH) $(BIN) image build -i $(GOLDEN_INV) --image $(GOLDEN_NAME) --state-dir $(GOLDEN_DIR)

golden-test:
	$(GO) run ./internal/rpi/cmd/golden-test -image $(GOLDEN_IMAGE) -i $(GOLDEN_INV) -timeout $(GOLDEN_TIMEOUT)

# A Pi's root over the network: the first netbooted Pi of $(GOLDEN_INV) gets
# its copy-on-write root (a qcow2 overlay over $(GOLDEN_IMAGE), exported by
# qemu-nbd on loopback, internal/rpi/netboot/nbdroot); the golden image's
# kernel boots with that export as its root through qemu's NBD client, the
# seed is applied and checked as in golden-test; then the file the guest
# wrote must be in the overlay and the golden image's sha256 unchanged.
netboot-test:
	$(GO) run ./internal/rpi/cmd/netboot-test -image $(GOLDEN_IMAGE) -i $(GOLDEN_INV) -timeout $(GOLDEN_TIMEOUT)

lint:
	@test -z "$$(gofmt -l cmd internal templates bench)" || { gofmt -l cmd internal templates bench; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)

clean:
	rm -rf bin out .provision
