# Plumb — see README.md. `make demo` and `make test` work on a fresh Debian 12
# machine as root with only Go installed: both install what they need.

GO       ?= go
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/plumb-os/plumb/internal/buildinfo.Version=$(VERSION)
GOBUILD  := $(GO) build -trimpath -ldflags '$(LDFLAGS)'
CACHE    ?= $(CURDIR)/.cache
OUT      ?= $(CURDIR)/out
RECIPE   ?= recipes/qemu-x86_64.yaml
export PLUMB_CACHE := $(CACHE)

# Debian packages the builder, the tests and the VM harness run. The
# workload tests start their own containerd + runc (private root, state and
# socket); they never use the system's containerd service. gcc needs
# libc6-dev for cgo (apt installs no recommends here); make build runs file.
# liblz4-dev: plumb and plumbd link liblz4 (format/lz4legacy: the delta
# decoder re-compresses Debian's LZ4 kernels; plumbd links liblz4.a).
# internal/deps's TestMakeDepsInstallsEveryTool checks that every tool a
# test, a make target or a script runs comes from this list (or from a
# package every Debian has).
DEB_PKGS := qemu-system-x86 ovmf swtpm swtpm-tools mtools dosfstools \
	squashfs-tools e2fsprogs gdisk systemd-boot-efi busybox-static cpio \
	zstd xz-utils bzip2 nginx-light curl openssl tpm2-tools osslsigncode \
	gcc libc6-dev libssl-dev file containerd runc postgresql \
	cryptsetup-bin sbsigntool binutils chromium liblz4-dev

# What make bench compares plumb with (not needed by the tests).
BENCH_PKGS := bsdiff xdelta3 casync ostree time mosquitto

# What make cleanroot needs on the host (scripts/cleanroot.sh).
CLEANROOT_PKGS := debootstrap

# Debian packages the tests unpack and boot, cached in $(CACHE)/debs (the
# same cache plumb build uses). The kernel is the demo recipe's; the
# previous one (-55) is v1 of the delta update test (e2e TestDeltaUpdateVM);
# containerd, runc and their libraries are the demo recipe's too.
TEST_DEBS := linux-image-6.1.0-56-cloud-amd64 linux-image-6.1.0-55-cloud-amd64 busybox-static systemd-boot-efi \
	containerd runc libc6 libgcc-s1 libseccomp2

.PHONY: all deps deps-bench install-pkgs debs build test test-short lint bench demo demo-secure cleanroot clean

all: build

# deps installs the missing Debian packages only (idempotent, no apt call
# when everything is there).
deps:
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(DEB_PKGS)"

deps-bench:
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(BENCH_PKGS)"

install-pkgs:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# debs downloads the test packages that are not cached yet.
debs: deps
	@mkdir -p $(CACHE)/debs
	@cd $(CACHE)/debs && for p in $(TEST_DEBS); do \
	  ls $${p}_*.deb >/dev/null 2>&1 || apt-get download -q -o APT::Sandbox::User=root $$p; \
	done

# plumb uses cgo for libzstd (squashfs as small as mksquashfs's). plumbd
# re-compresses delta blocks exactly as the builder does, so it links the
# same libzstd (cgo), statically, and liblz4 (Debian's liblz4-dev, the
# static archive) to re-compress kernels: netgo/osusergo keep glibc's NSS out.
# plumb-init stays pure Go (CGO_ENABLED=0). Both device binaries are static.
STATIC_LDFLAGS := $(LDFLAGS) -linkmode external -extldflags -static

build:
	@mkdir -p bin
	CGO_ENABLED=1 $(GOBUILD) -o bin/ ./cmd/plumb
	CGO_ENABLED=1 $(GO) build -trimpath -tags netgo,osusergo -ldflags '$(STATIC_LDFLAGS)' -o bin/ ./cmd/plumbd
	CGO_ENABLED=0 $(GOBUILD) -o bin/ ./cmd/plumb-init
	@file bin/plumbd | grep -q 'statically linked' || { echo "bin/plumbd is not static"; exit 1; }

# test runs everything, VM boots included. Tests keep what they make for a
# person to look at (the page's screenshots) in t.ArtifactDir(): under
# out/test-artifacts/_artifacts/, each path in the test's log.
test: deps debs build
	mkdir -p out/test-artifacts
	$(GO) test -timeout 80m -count=1 -artifacts -outputdir $(CURDIR)/out/test-artifacts ./...

# test-short is the fast tier: offline, no VMs.
test-short:
	$(GO) test -short -count=1 ./...

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: deps deps-bench debs build
	bash bench/run.sh

# demo: build v1 and v2, publish both, serve them, boot v1 in QEMU and
# watch it update itself to v2 (scripts/demo.sh).
demo: deps debs build
	RECIPE=$(RECIPE) OUT=$(OUT) bash scripts/demo.sh

# cleanroot: make demo, then make test, in a new Debian 12 minbase root
# (debootstrap; slow: a whole fresh machine). See scripts/cleanroot.sh.
cleanroot:
	@$(MAKE) --no-print-directory install-pkgs PKGS="$(CLEANROOT_PKGS)"
	bash scripts/cleanroot.sh $(CLEANROOT_DIR)

# demo-secure: the same with dm-verity root slots and a signed boot chain
# under OVMF's Secure Boot build (snakeoil keys; docs/verified-boot.md).
demo-secure: deps debs build
	SECURE_BOOT=1 OUT=$(OUT) bash scripts/demo.sh

clean:
	rm -rf bin out
