#!/usr/bin/env bash
# The GPU path's first run, on a machine with an NVIDIA GPU and its driver:
#
#   deploy/gpu-check.sh [OUT_DIR]          # default OUT_DIR: $OUT, else /tmp/gpu-check
#
# 1. a fresh venv with the `gpu` extra as the GPU image installs it (requirements/image-gpu.txt,
#    hashes checked), plus requirements/dev.txt for the benchmark's tools;
# 2. `python -m app` with DEVICE=gpu and WORKERS=auto: both models must report a GPU device,
#    WORKERS=auto must give one worker, and the answers must match the same models run on the
#    CPU in process (labels equal, scores within 1e-4);
# 3. a few `make bench` points (python -m bench, batched and unbatched, DEVICE=gpu);
# 4. SIGTERM, exit status 0.
#
# Everything it prints goes to OUT_DIR/gpu-check.txt too; the benchmark's results to
# OUT_DIR/bench-gpu.json and .png. Exit status 0 only if every check passed.
# DEVICE=cpu runs the same flow on a machine without a GPU (to try the script itself).
# Offline (no PyPI): PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels, a folder made elsewhere with
#   pip download --no-deps --require-hashes -r requirements/image-gpu.txt -d /wheels (and dev.txt).
# VENV=/path reuses a venv made by an earlier run; BENCH_ARGS replaces the benchmark's arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${OUT:-/tmp/gpu-check}}
device=${DEVICE:-gpu}
python=${PYTHON:-python3}
venv=${VENV:-$out/venv}
port=${PORT:-8765}
bench_args=${BENCH_ARGS:---configs batched,unbatched --concurrency 1,16,64 --rounds 2 --no-reload}
mkdir -p "$out"
report=$out/gpu-check.txt
: >"$report"
say() { printf '%s\n' "$*" | tee -a "$report"; }
# TensorFlow's start-up chatter and library warnings, out of the report.
quiet() {
    grep -v -e '^WARNING' -e '^I0000' -e '^E0000' -e '^To enable the following' \
        -e 'DeprecationWarning' -e 'from starlette.testclient' || true
}
step() { say ""; say "== $(date -u +%H:%M:%S) $*"; }
failed=0

step "machine"
say "device under test: $device; repository $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ "$device" == gpu ]]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$report" ||
        { say "FAIL: nvidia-smi: no NVIDIA driver or GPU"; exit 1; }
fi
say "$(nproc) CPUs, $("$python" --version 2>&1)"

step "venv $venv"
started=$SECONDS
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "pip==${PIP_VERSION:-26.3}"
fi
"$venv/bin/python" -m pip install --quiet --no-deps --require-hashes -r requirements/image-gpu.txt
"$venv/bin/python" -m pip install --quiet --require-hashes -r requirements/dev.txt
"$venv/bin/python" -m pip check | tee -a "$report"
say "installed in $((SECONDS - started)) s: $("$venv/bin/python" -m pip list 2>/dev/null |
    grep -E '^(tensorflow|nvidia-cudnn-cu[0-9]+|nvidia-cublas-cu[0-9]+) ' | tr -s ' ' | paste -sd, -)"
"$venv/bin/python" - <<'EOF' 2>&1 | quiet | tee -a "$report"
import tensorflow as tf
print("TensorFlow", tf.__version__, "CUDA build:", tf.test.is_built_with_cuda(),
      "GPUs:", tf.config.list_physical_devices("GPU"))
EOF

step "python -m app, DEVICE=$device WORKERS=auto, port $port"
server_log=$out/server.log
started=$SECONDS
DEVICE=$device WORKERS=auto HOST=127.0.0.1 PORT=$port MODEL_DIR=models LOG_LEVEL=info \
    "$venv/bin/python" -m app >"$server_log" 2>&1 &
server=$!
# shellcheck disable=SC2317  # called by the trap
stop_server() { kill -TERM "$server" 2>/dev/null || true; }
trap stop_server EXIT
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
    if ! kill -0 "$server" 2>/dev/null || ((SECONDS - started > 600)); then
        say "FAIL: not ready; the end of $server_log:"; tail -40 "$server_log" | tee -a "$report"
        exit 1
    fi
    sleep 1
done
say "ready after $((SECONDS - started)) s"
grep -E 'WORKERS=auto|models run on|loaded from' "$server_log" | tee -a "$report" || true

step "checks"
# The CPU reference runs in this process: no GPU for it (CUDA_VISIBLE_DEVICES empty).
DEVICE=$device PORT=$port CUDA_VISIBLE_DEVICES='' "$venv/bin/python" - <<'EOF' 2>&1 | quiet | tee -a "$report" || failed=1
"""Both models on the device under test; answers equal to the CPU's within 1e-4."""
import io
import os
import sys

import httpx
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app

device, url = os.environ["DEVICE"], f"http://127.0.0.1:{os.environ['PORT']}"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


models = httpx.get(f"{url}/v1/models", timeout=30).json()["models"]
for model in models:
    on = model["device"]
    check(device.upper() in on.upper(), f"{model['name']} v{model['version']} on {on}")

pixels = np.zeros((28, 28), dtype=np.uint8)  # a drawn 7, light on dark
pixels[5:8, 6:22] = 255
for row in range(8, 24):
    column = 21 - (row - 8) // 2
    pixels[row, column - 1 : column + 2] = 255
buffer = io.BytesIO()
Image.fromarray(pixels).save(buffer, "PNG")
reviews = {"reviews": [
    "A wonderful, moving film. The acting is superb and the story is beautiful.",
    "Awful. A boring plot, terrible acting and a complete waste of time.",
]}
files = {"file": ("seven.png", buffer.getvalue(), "image/png")}
served = {
    "sentiment": httpx.post(f"{url}/v1/sentiment/predict", json=reviews, timeout=60).json(),
    "digits": httpx.post(f"{url}/v1/digits/predict", files=files, timeout=60).json(),
}
with TestClient(create_app(Settings(_env_file=None, model_dir="models", device="cpu"))) as cpu:
    reference = {
        "sentiment": cpu.post("/v1/sentiment/predict", json=reviews).json(),
        "digits": cpu.post("/v1/digits/predict", files=files).json(),
    }
labels = [p["label"] for p in served["sentiment"]["predictions"]]
check(labels == ["positive", "negative"], f"sentiment labels {labels}")
digit = served["digits"]["predictions"][0]["digit"]
check(digit == 7, f"digit {digit} for a drawn 7")
for name, key in (("sentiment", "score"), ("digits", "probabilities")):
    got = np.array([p[key] for p in served[name]["predictions"]], dtype=float)
    want = np.array([p[key] for p in reference[name]["predictions"]], dtype=float)
    gap = float(np.max(np.abs(got - want)))
    check(gap <= 1e-4, f"{name}: largest difference from the CPU's answer {gap:.2e}")
sys.exit(1 if failures else 0)
EOF
if [[ "$device" == gpu ]]; then
    if grep -q 'WORKERS=auto: 1 ' "$server_log"; then
        say "ok   WORKERS=auto gave 1 worker"
    else
        say "FAIL WORKERS=auto did not give 1 worker"; failed=1
    fi
fi

step "SIGTERM"
trap - EXIT
kill -TERM "$server"
status=0
wait "$server" || status=$?
if ((status == 0)); then say "ok   exit status 0"; else say "FAIL exit status $status"; failed=1; fi

step "python -m bench $bench_args (DEVICE=$device)"
# shellcheck disable=SC2086  # word splitting of the arguments is meant
DEVICE=$device "$venv/bin/python" -m bench $bench_args \
    --output "$out/bench-gpu.json" --plot "$out/bench-gpu.png" 2>&1 |
    quiet | tee -a "$report" || failed=1

step "done: $( ((failed)) && echo 'FAILED' || echo 'every check passed')"
exit "$failed"
