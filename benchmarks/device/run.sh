#!/usr/bin/env bash
# The GPU run in one call of the device tool (see benchmarks/device/run.py for what it measures):
#   device.run(command="bash benchmarks/device/run.sh", carry=["benchmarks/device/carry"], timeout_s=600)
#   device.run(command="bash benchmarks/device/run.sh --smoke", ...)            (<= 3 minutes)
# The image has Python 3.12, torch 2.11 (CUDA), meson, ninja, nanobind, numpy, typer, rich, matplotlib,
# pytest and torchvision, but not meson-python, pyproject-metadata, nlohmann-json nor LoadGen: benchmarks/device/prepare.sh
# puts them (and CIFAR-10's JPEG archive) in benchmarks/device/carry/ beforehand, on a machine with the network.
# Builds resx against the image's own torch, in a venv that sees the image's packages, then runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OUT="${OUT:-$PWD/device-out}" PYTHONUNBUFFERED=1 RESX_QUIET_JIT=1 PATH="/tmp/resx-venv/bin:$PATH"
mkdir -p "$OUT"
start=$(date +%s)
# Safe to rerun on the same machine: the venv counts as made only once everything installed (the marker);
# a half-made one (a run cut short) is made again.
if [ ! -f /tmp/resx-venv/.resx-installed ]; then
  rm -rf /tmp/resx-venv
  python3 -m venv --system-site-packages /tmp/resx-venv
  /tmp/resx-venv/bin/pip install -q --no-index --no-deps --find-links benchmarks/device/carry/wheels \
    meson-python pyproject-metadata nlohmann-json mlcommons-loadgen
  # LoadGen's C++ sources where meson.build looks for them: the venv's src/, as `make` unpacks them.
  mkdir -p /tmp/resx-venv/src && tar xzf benchmarks/device/carry/mlcommons_loadgen-*.tar.gz -C /tmp/resx-venv/src
  /tmp/resx-venv/bin/pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/device -e . 2>&1 | tee "$OUT/build.log"
  /tmp/resx-venv/bin/python -c "import resx._cpp" && touch /tmp/resx-venv/.resx-installed
fi
echo "install: $(( $(date +%s) - start )) s"
budget=$(( ${RESX_DEVICE_BUDGET:-540} - ($(date +%s) - start) ))
case " $* " in *" --smoke "*) budget=$(( ${RESX_DEVICE_BUDGET:-170} - ($(date +%s) - start) ));; esac
exec /tmp/resx-venv/bin/python benchmarks/device/run.py --budget "$budget" "$@"
