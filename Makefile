# vmapp — build, test, lint, demo.
#
# Tools are pinned and installed with `go install` into a cache outside the
# clone ($(TOOLS_DIR)), so a fresh machine with only Go needs nothing else and
# later runs reuse them. MinIO takes about 5 minutes to build the first time.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

TOOLS_DIR ?= $(or $(VMAPP_TOOLS_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/vmapp/bin)
export VMAPP_TOOLS_DIR := $(TOOLS_DIR)
export PATH := $(TOOLS_DIR):$(PATH)

BUF_VERSION            := v1.75.0
PROTOC_GEN_GO_VERSION  := v1.36.12
PROTOC_GEN_GRPC_VERSION := v1.6.2
# grpc-gateway's two plugins (the REST API and its OpenAPI document) share
# the version of the runtime in go.mod.
GRPC_GATEWAY_VERSION   := v2.33.0

BIN := bin
CMDS := vmappd vmapp

# The version, commit and date stamped into the binaries (--version,
# vmapp_build_info): the newest tag, or the commit when there is none.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO := github.com/vmapp/vmapp/internal/buildinfo
LDFLAGS := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(DATE)

.PHONY: all build proto lint cross test test-short test-tools bench bench-tools demo down tools minio clean

all: build

build:
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# tool NAME PACKAGE VERSION: go install PACKAGE@VERSION into TOOLS_DIR unless
# the stamp for that version is there.
define tool
$(TOOLS_DIR)/.$(1)-$(3):
	@mkdir -p $(TOOLS_DIR)
	@echo "installing $(1) $(3) into $(TOOLS_DIR)"
	GOBIN=$(TOOLS_DIR) GOFLAGS= go install $(2)@$(3)
	@touch $$@
endef
$(eval $(call tool,buf,github.com/bufbuild/buf/cmd/buf,$(BUF_VERSION)))
$(eval $(call tool,protoc-gen-go,google.golang.org/protobuf/cmd/protoc-gen-go,$(PROTOC_GEN_GO_VERSION)))
$(eval $(call tool,protoc-gen-go-grpc,google.golang.org/grpc/cmd/protoc-gen-go-grpc,$(PROTOC_GEN_GRPC_VERSION)))
$(eval $(call tool,protoc-gen-grpc-gateway,github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway,$(GRPC_GATEWAY_VERSION)))
$(eval $(call tool,protoc-gen-openapiv2,github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2,$(GRPC_GATEWAY_VERSION)))

BUF := $(TOOLS_DIR)/.buf-$(BUF_VERSION)
GEN := $(TOOLS_DIR)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) $(TOOLS_DIR)/.protoc-gen-go-grpc-$(PROTOC_GEN_GRPC_VERSION) \
  $(TOOLS_DIR)/.protoc-gen-grpc-gateway-$(GRPC_GATEWAY_VERSION) $(TOOLS_DIR)/.protoc-gen-openapiv2-$(GRPC_GATEWAY_VERSION)

tools: $(BUF) $(GEN) minio

# The pinned MinIO, installed by the same code the tests use.
minio:
	go run ./internal/testkit/miniotest/cmd/install-minio

# proto-check: the generated code and the OpenAPI document (served at
# /openapi.json) are what the protos give: generated again into a scratch
# directory and compared with the committed files.
.PHONY: proto-check
proto-check: $(BUF) $(GEN)
	@tmp=$$(mktemp -d); trap 'rm -rf '$$tmp EXIT; \
	  buf generate --template buf.gen.yaml -o $$tmp; gofmt -w $$tmp/proto; \
	  status=0; for f in $$(cd $$tmp && find . -type f); do \
	    if ! cmp -s $$tmp/$$f $$f; then echo "$$f differs from what the protos generate: run make proto"; status=1; fi; \
	  done; exit $$status

# NOTICE: the third-party modules in the binaries and their licenses.
notice:
	go run ./internal/notice/cmd > NOTICE

proto: $(BUF) $(GEN)
	buf generate
	gofmt -w proto

lint: $(BUF) $(GEN)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	cd bench && go vet -tags bench ./...
	cd deploy/dist && go vet ./...
	cd deploy/prometheus && go vet ./...
	buf lint
	buf format --diff --exit-code
	$(MAKE) --no-print-directory proto-check
	$(MAKE) --no-print-directory cross

# The agent and the CLI for Windows, and for macOS: built, and the agent's
# packages vetted for Windows (with the tests that run there: the unit
# tests of its Windows logic). This machine can't run them.
cross:
	GOOS=windows go build ./cmd/vmapp-agent ./cmd/vmapp
	GOOS=windows go vet ./client/... ./cmd/vmapp-agent/... ./internal/atomicfile/
	GOOS=darwin go build ./cmd/vmapp-agent ./cmd/vmapp

# A release into dist/: static binaries (linux/amd64, linux/arm64; the
# agent for windows/amd64), a tarball per platform, .deb and .rpm packages
# (vmappd, vmapp-agent, vmapp) and SHA256SUMS. deploy/dist is the program
# that packs them, a module of its own (nfpm stays out of go.mod).
DIST := dist
DIST_LINUX := linux/amd64 linux/arm64
.PHONY: dist
dist:
	rm -rf $(DIST)
	for p in $(DIST_LINUX); do \
	  CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} go build -trimpath -ldflags "$(LDFLAGS)" \
	    -o $(DIST)/bin/$${p%/*}_$${p#*/}/ ./cmd/vmappd ./cmd/vmapp-agent ./cmd/vmapp; \
	done
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 go build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/bin/windows_amd64/ ./cmd/vmapp-agent
	cd deploy/dist && go run . --root ../.. --dir ../../$(DIST) --version $(VERSION)

# Man pages of the three binaries (cobra/doc, built in with -tags man
# only) into man/: man -l man/vmapp.1
MAN := man
.PHONY: man
man:
	rm -rf $(MAN)
	for c in vmappd vmapp-agent vmapp; do go run -tags man ./cmd/$$c gen-man $(MAN); done

test: minio test-tools
	go test -race -timeout 60m ./...
	cd deploy/dist && go test -count=1 -timeout 20m ./...
	cd deploy/prometheus && go test -count=1 ./...

# The signing tests check vmapp's signatures with the real minisign (the
# system's package), deploy/systemd's test its units with systemd-analyze,
# deploy/dist's the .rpm packages with rpm, the web console's tests drive
# Debian's chromium; they skip those checks, saying
# so, without them.
test-tools:
	@if ! command -v minisign >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing minisign (the signing tests' round trips)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq minisign >/dev/null; \
	  else echo "minisign missing: the signing tests skip their round trips with it"; fi; \
	fi
	@if ! command -v systemd-analyze >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing systemd (systemd-analyze verify checks deploy/systemd's units)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	  else echo "systemd-analyze missing: the units' test skips verify"; fi; \
	fi
	@if ! command -v rpm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing rpm (deploy/dist's test reads the .rpm packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm >/dev/null; \
	  else echo "rpm missing: deploy/dist's test doesn't read the .rpm packages"; fi; \
	fi
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (the web console's browser tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: the web console's browser tests skip"; fi; \
	fi

test-short:
	go test -short ./...

# The compose topology's images with no registry: local stand-ins for the
# base images, binaries built here (deploy/docker/images.sh; VMAPP_TAG).
.PHONY: images test-compose
images:
	./deploy/docker/images.sh

# deploy/docker-compose.yml for real: make images, up, faults made with
# docker, down -v (deploy/compose_live_test.go; skipped without a Docker
# engine). Kept out of make test for its length; see README.
test-compose: minio
	VMAPP_COMPOSE=1 go test -count=1 -v -timeout 45m -run TestComposeLive ./deploy/

# Benchmarks against real processes; QUICK=1 for a smoke run. Results go to
# bench/results/latest.{json,md}; see bench/README.md.
QUICK ?=
bench: minio bench-tools
	cd bench && QUICK=$(QUICK) go test -tags bench -count=1 -v -timeout 90m .

# The download baselines (curl, aria2c) come from the system's packages;
# scenarios skip a baseline that isn't installed and say so.
bench-tools:
	@if ! command -v aria2c >/dev/null || ! command -v curl >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing curl and aria2 (download baselines)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl aria2 >/dev/null; \
	  else echo "curl or aria2c missing: their download baselines will be skipped"; fi; \
	fi

demo: build minio
	./deploy/local/demo.sh

down:
	./deploy/local/down.sh

clean: down
	rm -rf $(BIN)
