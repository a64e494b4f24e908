#!/bin/sh
# Crash images at scale (issue 18 item 5; benchmarks/RESULTS.md §14): CrashImageTests, whose bounded run
# is part of `make test`, with CRASH_IMAGES_SCALE times the writes and the page subsets tried per commit.
#   benchmarks/crashimages.sh [SCALE]     # default 5
set -eu
cd "$(dirname "$0")/.."
swift build --build-tests
CRASH_IMAGES_SCALE="${1:-5}" swift test --skip-build --filter CrashImageTests
