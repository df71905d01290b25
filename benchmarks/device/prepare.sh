#!/usr/bin/env bash
# Fills benchmarks/device/carry/ (git-ignored; the device call carries it): the wheels the GPU image
# lacks (meson-python, pyproject-metadata, nlohmann-json, the C++ runtime's JSON library, and MLPerf's
# LoadGen with its sources), and CIFAR-10 as the 18.5 MB JPEG archive with its converter from
# ../shared/data. Run it here, where the package registry and ../shared are reachable, before the device call.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p carry/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d carry/wheels \
  meson-python==0.22.1 pyproject-metadata==0.12.1 nlohmann-json==3.12.0
# MLPerf's LoadGen at the version requirements.txt pins: its wheel for the image's Python 3.12 (manylinux
# 2.28), and its sdist, whose C++ sources meson.build compiles into the C++ runtime.
loadgen=$(sed -n 's/^mlcommons-loadgen==//p' ../../requirements.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  -d carry/wheels "mlcommons-loadgen==$loadgen"
python3 -m pip download -q --no-deps --no-binary=:all: -d carry "mlcommons-loadgen==$loadgen"
shared="${RESX_SHARED_DATA:-../../../shared/data}"
if [ -f "$shared/cifar10-jpeg.tar.xz" ]; then
  cp "$shared/cifar10-jpeg.tar.xz" "$shared/make-cifar10" carry/
else
  echo "no $shared/cifar10-jpeg.tar.xz: the device run will skip the accuracy table" >&2
fi
du -sh carry
