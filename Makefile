# walink — build, demo, test, lint.
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: all build demo test lint fmt clean bench

all: build

## Release binaries (never built with test-only features).
build:
	$(CARGO) build --release --bins

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

## Speed and memory figures (release build, mock-wa on loopback); results in
## target/bench/results.json. BENCH_ACCOUNTS=100,500 sets the scale runs.
bench:
	$(CARGO) bench --bench walink

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
