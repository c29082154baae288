#!/bin/sh
# Installs every Debian package dreamfleet needs to build, test and run.
# Idempotent: packages already present are left alone, so running it twice
# costs one `dpkg-query` and nothing else.
#
#   deploy/install-deps.sh          build + runtime + test dependencies
#
# Runs apt-get through sudo when not root.
set -eu

# Why each package is here (see docs/dependencies.md for the longer story).
PACKAGES="
build-essential
cmake
pkg-config
libzmq3-dev
libczmq-dev
libprotobuf-c-dev
protobuf-c-compiler
libuv1-dev
liblz4-dev
libsqlite3-dev
libvulkan-dev
glslang-tools
spirv-tools
mesa-vulkan-drivers
vulkan-validationlayers
vulkan-tools
libopenblas-dev
libjansson-dev
zlib1g-dev
libpng-dev
libjpeg62-turbo-dev
libwebp-dev
libswscale-dev
libheif-dev
liblcms2-dev
libopencv-objdetect-dev
libopencv-imgproc-dev
libopencv-core-dev
opencv-data
clang-14
libclang-rt-14-dev
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
