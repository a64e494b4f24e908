# gemcache: `make run` serves with proxy.conf, `make test` runs every test. Both install what is missing.
SWIFT ?= swift
APT_PACKAGES := liblmdb-dev libssl-dev pkg-config
PORT ?= 8080

.PHONY: deps build run test demo clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c release --product gemcache

run: build
	.build/release/gemcache serve --config proxy.conf

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo: build
	scripts/demo.sh

clean:
	rm -rf .build
