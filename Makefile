# gemcache: `make run` serves with proxy.conf, `make test` runs every test. Both install what is missing.
SWIFT ?= swift
APT_PACKAGES := liblmdb-dev libssl-dev zlib1g-dev pkg-config

.PHONY: deps build run test demo bench clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	python3 -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c release --product gemcache

run: build
	.build/release/gemcache serve --config proxy.conf

# The first line checks the code's format against .swift-format (Hummingbird's, less
# OnlyOneTrailingClosureArgument: the tests' `with…(configure: {…}) { body }` reads better as it is);
# `swift format format -i -r Sources Tests` applies it.
# The dashboard test renders the page in Debian's headless chromium; the shared-tier tests start
# private PostgreSQL servers (a target-specific variable reaches the deps prerequisite too). The last
# line fuzzes the HTTP front of the built binary for 20 s (a finding's inputs go to .build-fuzz/http-findings/).
# Tests run one at a time: several end-to-end tests bound how long an attack may hold the proxy, and
# on 2 cores the whole suite at once (streams of tens of MB, debug builds of the binary) blurred those
# bounds (about 106 s in all, against 41 s in parallel).
test: APT_PACKAGES += chromium postgresql openssl
test: deps
	$(SWIFT) format lint --strict --recursive Sources Tests
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --no-parallel
	scripts/sdk-tests.sh
	benchmarks/httpfuzz.py --bin .build/debug/gemcache --seconds 20

demo: build
	scripts/demo.sh

# Every table of benchmarks/RESULTS.md (needs nginx and wrk: apt-get install -y nginx wrk; postgresql
# for sharedtier.py; strace for the commit count of missstorm.py, optional). BENCH_BIN: the release binary the scripts run.
BENCH_BIN ?= .build/release/gemcache
bench: build
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "bench needs nginx and wrk: apt-get install -y nginx wrk"; exit 1; }
	benchmarks/hitpath.py --bin $(BENCH_BIN)
	benchmarks/hitpath.py --bin $(BENCH_BIN) --pace-ms 2 --rounds 9
	benchmarks/hitpath.py --bin $(BENCH_BIN) --kinds all --no-litellm --rounds 3 --duration 5
	benchmarks/hitpath.py --bin $(BENCH_BIN) --kinds all --pace-ms 5 --rounds 3 --duration 5
	benchmarks/misspath.py --bin $(BENCH_BIN)
	benchmarks/callreduction.py --bin $(BENCH_BIN)
	benchmarks/missstorm.py --bin $(BENCH_BIN)
	benchmarks/missstorm.py --bin $(BENCH_BIN) --no-strace
	benchmarks/scaling.py --bin $(BENCH_BIN)
	benchmarks/sharedtier.py --bin $(BENCH_BIN)

clean:
	rm -rf .build
