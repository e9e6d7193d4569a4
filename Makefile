# walink — build, demo, test, lint, packages, install.
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE := $(TARGET_DIR)/release

# `make install` layout (GNU conventions); DESTDIR for staged installs.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d

.PHONY: all build demo test lint fmt clean bench check-release completions deb rpm \
	check-deb check-rpm install uninstall test-system chaos fuzz

all: build

## Release binaries (never built with test-only features).
build: check-release
	$(CARGO) build --release -p walink --bins

## Fails when the release dependency graph (dev-dependencies excluded)
## enables any danger-* feature, such as danger-skip-cert-chain-verify.
check-release:
	@features=$$($(CARGO) tree -p walink -e features,normal,build --prefix none) || exit 1; \
	if printf '%s\n' "$$features" | grep 'danger-'; then \
		echo "check-release: the release build enables the danger-* feature(s) above; keep them in [dev-dependencies]" >&2; \
		exit 1; \
	fi; \
	echo "check-release: no danger-* feature in the release build"

## Shell completions for the packages, from the release walink.
completions: build
	mkdir -p $(RELEASE)/completions
	$(RELEASE)/walink completions bash > $(RELEASE)/completions/walink.bash
	$(RELEASE)/walink completions zsh > $(RELEASE)/completions/_walink
	$(RELEASE)/walink completions fish > $(RELEASE)/completions/walink.fish

## Debian package: $(TARGET_DIR)/debian/walink_*.deb
deb: completions
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
	$(CARGO) deb -p walink --no-build

## RPM package: $(TARGET_DIR)/generate-rpm/walink-*.rpm
rpm: completions
	@command -v cargo-generate-rpm >/dev/null || $(CARGO) install cargo-generate-rpm --locked
	$(CARGO) generate-rpm --target-dir $(TARGET_DIR)

## Checks what the packages hold and which scripts they run.
check-deb: deb
	scripts/check-packages.sh deb $(TARGET_DIR)
check-rpm: rpm
	@command -v rpm >/dev/null || (apt-get install -y rpm || (apt-get update && apt-get install -y rpm))
	scripts/check-packages.sh rpm $(TARGET_DIR)

## From source: make && sudo make install [PREFIX=/usr/local] [DESTDIR=...].
## The installed config is never overwritten; uninstall leaves it and the state.
install:
	test -x $(RELEASE)/walinkd -a -x $(RELEASE)/walink -a -f $(RELEASE)/completions/walink.bash || \
		{ echo "build first: make build completions" >&2; exit 1; }
	install -D -m 755 $(RELEASE)/walinkd $(DESTDIR)$(BINDIR)/walinkd
	install -D -m 755 $(RELEASE)/walink $(DESTDIR)$(BINDIR)/walink
	install -d -m 755 $(DESTDIR)$(SYSCONFDIR)/walink
	test -e $(DESTDIR)$(SYSCONFDIR)/walink/walink.toml || \
		install -m 644 etc/walink.toml $(DESTDIR)$(SYSCONFDIR)/walink/walink.toml
	install -d -m 755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/bin/walinkd|$(BINDIR)/walinkd|' -e 's|/etc/walink/|$(SYSCONFDIR)/walink/|' \
		systemd/walink.service > $(DESTDIR)$(UNITDIR)/walink.service
	chmod 644 $(DESTDIR)$(UNITDIR)/walink.service
	install -m 644 systemd/walink.socket $(DESTDIR)$(UNITDIR)/walink.socket
	install -D -m 644 systemd/walink.sysusers $(DESTDIR)$(SYSUSERSDIR)/walink.conf
	install -D -m 644 systemd/walink.tmpfiles $(DESTDIR)$(TMPFILESDIR)/walink.conf
	install -D -m 644 man/walinkd.8 $(DESTDIR)$(MANDIR)/man8/walinkd.8
	install -D -m 644 man/walink.1 $(DESTDIR)$(MANDIR)/man1/walink.1
	install -D -m 644 man/walink.toml.5 $(DESTDIR)$(MANDIR)/man5/walink.toml.5
	install -D -m 644 $(RELEASE)/completions/walink.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/walink
	install -D -m 644 $(RELEASE)/completions/_walink $(DESTDIR)$(DATADIR)/zsh/site-functions/_walink
	install -D -m 644 $(RELEASE)/completions/walink.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/walink.fish
	@echo "installed; as root: systemd-sysusers; systemd-tmpfiles --create; systemctl daemon-reload; systemctl enable --now walink.socket walink.service"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/walinkd $(DESTDIR)$(BINDIR)/walink \
		$(DESTDIR)$(UNITDIR)/walink.service $(DESTDIR)$(UNITDIR)/walink.socket \
		$(DESTDIR)$(SYSUSERSDIR)/walink.conf $(DESTDIR)$(TMPFILESDIR)/walink.conf \
		$(DESTDIR)$(MANDIR)/man8/walinkd.8 $(DESTDIR)$(MANDIR)/man1/walink.1 \
		$(DESTDIR)$(MANDIR)/man5/walink.toml.5 \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/walink \
		$(DESTDIR)$(DATADIR)/zsh/site-functions/_walink \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/walink.fish
	@echo "kept $(SYSCONFDIR)/walink/walink.toml and /var/lib/walink (the accounts' sessions); remove them by hand if you mean to"

## Offline demo: mock WhatsApp server + walinkd + pairing + a message.
## Debug build of all targets: the binaries trust mock-wa's test certificate
## (the danger-skip-cert-chain-verify feature of [dev-dependencies]).
demo:
	$(CARGO) build --workspace --all-targets
	scripts/demo.sh $(TARGET_DIR)/debug

## Every test: unit, IPC, CLI and end to end against mock-wa.
test:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found; running cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	@echo "make test: done; the test under a real systemd is separate (it needs root and a release build): make test-system"

## Speed and memory figures (release build, mock-wa on loopback); results in
## target/bench/results.json. BENCH_ONLY=reconnect,blackhole,send,scale,baileys,snapshot
## picks sections; BENCH_ACCOUNTS=100,500,1000 sets the scale runs (see benches/walink.rs).
## The baileys section needs Node.js 20 and npm (it runs npm ci when needed).
bench:
	$(CARGO) bench --bench walink

## Fault injection: the real walinkd against mock-wa, several accounts with
## messages flowing both ways, a seeded mix of kill -9, drops, refusals,
## stream errors, slow links and blackholes; checks that nothing was lost or
## duplicated and every account came back (tests/chaos/scenario.rs).
## CHAOS_SECONDS (default 180, at most 600), CHAOS_ACCOUNTS (default 3),
## CHAOS_SEED (default: a random one, printed; set it to replay a run),
## CHAOS_KILL_WEIGHT (how often kill -9 is drawn; default 12, meant for 30+ kills in
## 10 minutes).
CHAOS_SECONDS ?= 180
CHAOS_ACCOUNTS ?= 3
chaos:
	@seed=$${CHAOS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make chaos: seed $$seed, $(CHAOS_SECONDS) s, $(CHAOS_ACCOUNTS) accounts"; \
	CHAOS_SEED=$$seed CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_ACCOUNTS=$(CHAOS_ACCOUNTS) \
		$(CARGO) test --test chaos -- --nocapture

## Fuzzing with cargo-fuzz (libFuzzer) on stable Rust: each of FUZZ_TARGETS
## for FUZZ_SECONDS. The corpus grows in $(TARGET_DIR)/fuzz/corpus/, seeded
## from fuzz/seeds/; a crash is saved under fuzz/artifacts/TARGET/ and fails
## the run (replay: cargo fuzz run --dev --sanitizer none TARGET FILE).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ipc_request config
FUZZ_DIR := $(abspath $(TARGET_DIR))/fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t || exit 1; \
		echo "make fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(CARGO) fuzz run --dev --sanitizer none --target-dir $(FUZZ_DIR) $$t \
			$(FUZZ_DIR)/corpus/$$t $(CURDIR)/fuzz/seeds/$$t \
			-- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

## End to end under a real systemd: boots a Debian container with
## systemd-nspawn and installs the .deb (scripts/test-system.sh says what it
## checks). Needs root and systemd-nspawn; says so and skips otherwise.
test-system:
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "test-system: SKIPPED: needs root (systemd-nspawn boots a container)"; \
	elif ! command -v systemd-nspawn >/dev/null; then \
		echo "test-system: SKIPPED: systemd-nspawn is not installed (apt-get install systemd-container debootstrap)"; \
	else \
		$(MAKE) deb && \
		$(CARGO) build --workspace --all-targets && \
		scripts/test-system.sh "$$(ls -t $(TARGET_DIR)/debian/walink_*.deb | head -n 1)" $(TARGET_DIR)/debug; \
	fi
