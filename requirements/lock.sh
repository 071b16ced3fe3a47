#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml with uv: `make lock` (`make lock UPGRADE=1` moves
# every pin to the newest release pyproject.toml allows; without it a pin that still satisfies
# pyproject.toml is kept, so a new dependency changes only what it needs).
#
#   dev.txt        make run, make test, make lint, CI: the project, the dev extra and TensorFlow;
#                  universal (any OS and Python >= 3.11, markers where they differ)
#   image-cpu.txt  the CPU image: tensorflow-cpu (the same release as dev.txt's tensorflow,
#                  without the CUDA kernels) in place of tensorflow; the otel extra
#   image-gpu.txt  the GPU image and deploy/gpu-check.sh: the gpu extra, tensorflow[and-cuda];
#                  the otel extra
#
# The image locks are for the image's platform (Linux x86_64, glibc 2.36, Python 3.11), take
# every version dev.txt has, and leave out libclang: a C compiler's library that TensorFlow
# lists but does not load to serve (the image installs them with pip --no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."

uv=${UV:-.venv/bin/uv}
upgrade=()
[[ -n "${UPGRADE:-}" ]] && upgrade=(--upgrade)
common=(--quiet --generate-hashes --custom-compile-command "make lock" --python-version 3.11)
image=(--python-platform x86_64-manylinux_2_36 --constraint requirements/dev.txt
       --no-emit-package libclang)

"$uv" pip compile pyproject.toml --extra dev --universal "${common[@]}" "${upgrade[@]}" \
    --output-file requirements/dev.txt

tensorflow=$(sed -n 's/^tensorflow==\([^ ;\\]*\).*/\1/p' requirements/dev.txt)
[[ -n "$tensorflow" ]] || { echo "lock.sh: no tensorflow pin in requirements/dev.txt" >&2; exit 1; }
overrides=$(mktemp)
trap 'rm -f "$overrides"' EXIT
echo "tensorflow ; sys_platform == 'never'" >"$overrides"  # out with it, and in with:
echo "tensorflow-cpu==$tensorflow" |
    "$uv" pip compile pyproject.toml - --extra otel --override "$overrides" "${common[@]}" \
        "${image[@]}" --output-file requirements/image-cpu.txt
"$uv" pip compile pyproject.toml --extra gpu --extra otel "${common[@]}" "${image[@]}" \
    --output-file requirements/image-gpu.txt
