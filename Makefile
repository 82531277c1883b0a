# vrouter — build, test, benchmark, fuzz and lint.
# Tests that create namespaces need root; run them with sudo (see README).

GO          ?= go
BIN         := bin/vrouter
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.6.1
FUZZTIME    ?= 15s
FUZZMINIMIZETIME ?= 10s
FUZZPARALLEL ?=
# go test's default timeout (10 minutes) would kill a slow but working run
# of the lab tests: give it room, explicitly.
TEST_TIMEOUT  ?= 20m
# Lab tests run this many at a time (t.Parallel). On a 2-core machine the
# lab package took 7.4 min serially, 100 s with 4, 70 s with 6 and 60 s
# with 8, all passing; 6 leaves room before the agents starve and BGP
# hold timers (3 s in the failure tests) expire.
TEST_PARALLEL ?= 6
# Debian packages the tests and the lab use.
APT_PACKAGES := iproute2 iputils-ping iperf3 tshark traceroute bird frr gobgpd etcd-server nftables libssh-gcrypt-4 libreadline8 chromium
# BIRD 2 conflicts with bird (1.6) in Debian: it is extracted here instead.
BIRD2_DIR := /opt/vrouter-bird2
# promtool (the metrics tests run `promtool check metrics`) comes from
# Debian's prometheus package, extracted here rather than installed: the
# package would enable and try to start a Prometheus server.
PROMETHEUS_DIR := /opt/vrouter-prometheus

.PHONY: all deps build test bench fuzz lint run clean conformance

all: build

# deps installs the Debian packages the tests need when one is missing,
# without letting them start their services (bird, frr and etcd would run in
# the root namespace; the labs and tests start their own daemons).
deps:
	@missing=""; \
	for c in ip ping iperf3 tshark traceroute bird vtysh gobgpd etcd nft chromium; do \
		command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing packages (missing:$$missing)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
		policy=/usr/sbin/policy-rc.d; made=""; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; chmod +x $$policy; made=1; fi; \
		apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES) >/dev/null; rc=$$?; \
		if [ -n "$$made" ]; then rm -f $$policy; fi; \
		[ $$rc -eq 0 ] || exit $$rc; \
	fi; \
	if [ ! -x $(BIRD2_DIR)/usr/sbin/bird ]; then \
		echo "extracting bird2 into $(BIRD2_DIR) (it conflicts with bird, so it is not installed)"; \
		tmp=$$(mktemp -d) && (cd $$tmp && apt-get download bird2 >/dev/null) && \
		dpkg-deb -x $$tmp/bird2_*.deb $(BIRD2_DIR) && rm -rf $$tmp; \
	fi; \
	if [ ! -x $(PROMETHEUS_DIR)/usr/bin/promtool ] && ! command -v promtool >/dev/null 2>&1; then \
		echo "extracting promtool into $(PROMETHEUS_DIR) (Debian's prometheus package, not installed: no service)"; \
		tmp=$$(mktemp -d) && (cd $$tmp && apt-get download prometheus >/dev/null) && \
		dpkg-deb -x $$tmp/prometheus_*.deb $(PROMETHEUS_DIR) && rm -rf $$tmp; \
	fi

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vrouter

test: deps build
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -parallel $(TEST_PARALLEL) ./...

# conformance runs the shipped scenario suite through the binary and keeps
# the JUnit file and every scenario's captures for CI.
CONFORMANCE_JUNIT ?= bin/conformance.xml
CONFORMANCE_ARTIFACTS ?= bin/conformance
# scenarios run on labs of their own, CONFORMANCE_PARALLEL at once
CONFORMANCE_PARALLEL ?= 4
conformance: deps build
	rm -rf $(CONFORMANCE_ARTIFACTS)
	$(BIN) test scenarios/ --parallel $(CONFORMANCE_PARALLEL) --junit $(CONFORMANCE_JUNIT) --artifacts $(CONFORMANCE_ARTIFACTS)

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./...

# fuzz runs every fuzz target, one at a time, for FUZZTIME each (CI runs it
# with FUZZTIME=5s; run FUZZTIME=60s or more before changing a parser).
# FUZZPARALLEL caps the fuzzing workers (default: one per CPU; 1 spares a
# shared machine). FUZZMINIMIZETIME bounds the shrinking of each new
# interesting input: go's default of 60s would spend a short run shrinking
# one input instead of fuzzing. A package whose tests do not build fails the
# target rather than being skipped.
fuzz:
	@set -e; pkgs=$$($(GO) list -f '{{.ImportPath}}:{{.Dir}}' ./...); \
	for p in $$pkgs; do \
		pkg=$${p%%:*}; \
		grep -qs '^func Fuzz' $${p#*:}/*_test.go || continue; \
		list=$$($(GO) test -list '^Fuzz' $$pkg); \
		for f in $$(printf '%s\n' "$$list" | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) \
				-fuzzminimizetime $(FUZZMINIMIZETIME) $(if $(FUZZPARALLEL),-parallel $(FUZZPARALLEL)) $$pkg; \
		done; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# run is the main job: it deploys the Calico BGP example (three nodes, five
# workloads, full BGP mesh), shows node1's BGP peers and routes, pings and
# traceroutes across nodes, and leaves the lab running.
EXAMPLE := examples/calico-bgp.yaml
LAB := --lab calico-bgp
run: deps build
	@$(BIN) destroy -t $(EXAMPLE)
	$(BIN) deploy -t $(EXAMPLE)
	$(BIN) node status node1 $(LAB)
	$(BIN) route node1 $(LAB)
	$(BIN) exec $(LAB) web-1 -- ping -c 3 -i 0.2 10.244.104.1
	$(BIN) exec $(LAB) web-1 -- traceroute -n -q 1 -w 2 10.244.135.1
	@echo
	@echo "The lab keeps running. Look around with '$(BIN) inspect', '$(BIN) get blocks',"
	@echo "'$(BIN) exec web-2 -- ip route'; remove it with '$(BIN) destroy -t $(EXAMPLE)'."

clean:
	rm -rf bin
