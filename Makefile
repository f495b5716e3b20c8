# ringcap's build and test entry points. `make test` is the whole suite,
# as CI runs it (.ci/run); it needs root for the BPF and namespace tests.

GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# What the build needs: libpcap compiles filter expressions (through cgo,
# linked dynamically as tcpdump is).
BUILD_PACKAGES := gcc libc6-dev libpcap-dev
# What the tests use besides: tshark/capinfos read the files, tcpdump is
# the reference for filter expressions, ip, ping and tcpreplay make traffic
# between namespaces (ethtool sets a veth's offloads for GRO), strace counts the
# programs ringcap loads, clang regenerates the XDP object, Prometheus (and
# curl) scrapes the metrics, systemd-analyze checks the unit and man the
# installed page, mkfs.ext4 and mount make the file systems the direct I/O
# tests fill, mmdebstrap, podman and buildah build and run the image,
# openssh-server is the remote host of sshdump's capture, and Wireshark's
# window (wireshark-qt) is shown by xvfb, taken by xwd (x11-apps),
# converted by netpbm, read by tesseract-ocr and clicked by xdotool.
TEST_PACKAGES := tshark tcpdump tcpreplay iproute2 iputils-ping ethtool strace clang llvm libbpf-dev linux-libc-dev \
	prometheus curl systemd zsh fish e2fsprogs mount man-db mmdebstrap podman buildah openssh-server \
	wireshark-qt xvfb x11-apps netpbm tesseract-ocr xdotool

.PHONY: build binary deps build-deps packages install test image-test lint generate generate-check man bench-smoke

# Where make install puts ringcap, as packagers set them: make install
# PREFIX=/usr DESTDIR=debian/ringcap.
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
# Wireshark's global extcap folder, where Wireshark looks for capture
# programs besides its own: as tshark names it, else where Debian's
# Wireshark looks. make install puts deploy/wireshark-extcap there, as
# ringcap; the README gives each user's own folder.
EXTCAPDIR ?= $(or $(shell tshark -G folders 2>/dev/null | sed -n -E 's/^(Global )?Extcap path:[[:space:]]*//p'),/usr/lib/$(shell gcc -print-multiarch)/wireshark/extcap)

build: build-deps binary

binary:
	$(GO) build -buildvcs=auto -o ringcap ./cmd/ringcap

build-deps:
	@$(MAKE) --no-print-directory packages PACKAGES="$(BUILD_PACKAGES)"

# The binary, the man page, the bash, zsh and fish completions where each
# shell looks for them, the systemd unit (run from PREFIX's bin), the
# example options, which the unit reads once copied to INTERFACE.conf, and
# the script that puts ringcap in Wireshark's interface list.
# It builds the binary but installs no packages: packagers' builds run
# it without a network, and as root.
install: binary
	install -D -m 0755 ringcap $(DESTDIR)$(PREFIX)/bin/ringcap
	install -D -m 0644 docs/ringcap.1 $(DESTDIR)$(PREFIX)/share/man/man1/ringcap.1
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d $(DESTDIR)$(PREFIX)/lib/systemd/system
	./ringcap completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ringcap
	./ringcap completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_ringcap
	./ringcap completion fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/ringcap.fish
	sed 's|/usr/local/bin/ringcap|$(PREFIX)/bin/ringcap|g' deploy/ringcap@.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/ringcap@.service
	chmod 0644 $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ringcap $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_ringcap \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/ringcap.fish $(DESTDIR)$(PREFIX)/lib/systemd/system/ringcap@.service
	install -D -m 0644 deploy/ringcap.conf $(DESTDIR)$(SYSCONFDIR)/ringcap/example.conf
	extcap="$(DESTDIR)$(EXTCAPDIR)" && install -d "$$extcap" && \
		sed 's|/usr/local/bin/ringcap|$(PREFIX)/bin/ringcap|g' deploy/wireshark-extcap > "$$extcap/ringcap" && chmod 0755 "$$extcap/ringcap"

# The tests' S3 server, versitygw (Apache-2.0), is not a Debian package:
# built from the Go module proxy (about a minute) unless it is installed.
VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0

deps:
	@$(MAKE) --no-print-directory packages PACKAGES="$(BUILD_PACKAGES) $(TEST_PACKAGES)"
	@command -v versitygw >/dev/null || { echo "installing versitygw"; GOBIN=/usr/local/bin $(GO) install $(VERSITYGW); }

# Installs the Debian packages in PACKAGES that are missing; quiet when
# none is. The tests run the daemons some of them bring (sshd, prometheus)
# themselves, on loopback or in namespaces of their own: a policy-rc.d
# keeps apt from starting them on the host while it installs, and an sshd
# the tests brought never starts at boot (Debian's sshd_not_to_be_run).
packages:
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
		case " $$missing " in *" openssh-server "*) mkdir -p /etc/ssh && touch /etc/ssh/sshd_not_to_be_run;; esac; \
		policy=; [ -e /usr/sbin/policy-rc.d ] || { policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 0755 $$policy; }; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		status=$$?; [ -z "$$policy" ] || rm -f $$policy; exit $$status; \
	fi

test: deps lint generate-check
	$(GO) test -count=1 ./...
	$(MAKE) bench-smoke
	$(MAKE) image-test

# The container image built from deploy/Containerfile on Debian roots
# (mmdebstrap), and run: minutes of downloads and a build, after the
# other tests rather than beside them.
image-test:
	RINGCAP_IMAGE_TEST=1 $(GO) test -count=1 -timeout 40m -run TestContainerImage ./cmd/ringcap

# Benchmarks are measurements, not tests: CI only checks that they and
# ringbench still run, each in a short mode.
bench-smoke:
	$(GO) test -run XXX -bench . -benchtime 1x ./bpf ./capture ./writer
	$(GO) run ./cmd/ringbench --smoke --plot $${TMPDIR:-/tmp}/ringbench-smoke.png
	$(GO) run ./cmd/ringbench --hooks --smoke
	$(GO) run ./cmd/ringbench --rings-ab --smoke

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./... ./testdata ./testdata/gen
	$(GO) run $(STATICCHECK) ./... ./testdata ./testdata/gen

generate: man
	$(GO) generate ./bpf/... ./testdata

# The man page, made from the command definitions.
man:
	$(GO) run ./cmd/ringcap man > docs/ringcap.1

# The committed bpf2go output, replay corpus and man page must be what
# their sources generate.
generate-check: generate
	@git diff --exit-code --stat -- bpf/ testdata/ docs/ringcap.1 || { echo "generated files are stale: run make generate and commit"; exit 1; }
