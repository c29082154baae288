#!/bin/sh
# Installs dependencies, builds everything with -Werror and ASan+UBSan, and
# runs the whole test suite. This is the command .ci/run calls.
#
#   deploy/test.sh            (build dir: build-ci; override with DF_BUILD_DIR)
set -eu
cd "$(dirname "$0")/.."
deploy/install-deps.sh
build="${DF_BUILD_DIR:-build-ci}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDF_WERROR=ON -DDF_SANITIZE=ON
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 1200
