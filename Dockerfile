# The inference service as a container image.
#
#   docker build -t keras-inference-service .                      # CPU (default)
#   docker build -t keras-inference-service:gpu --build-arg FLAVOR=gpu .
#
# Both flavours install from a lock file with hashes (requirements/image-<flavour>.txt, made by
# `make lock`): CPU gets tensorflow-cpu, GPU the `gpu` extra (tensorflow[and-cuda]), whose CUDA
# libraries come as pip wheels, so the base stays python:slim and the host needs only the
# NVIDIA driver and the NVIDIA Container Toolkit. tests/docker/test_image.py builds the CPU
# image with Podman and runs it; docs/operations.md has its figures. The build context is
# app/, models/, requirements/, pyproject.toml and README.md (.dockerignore).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------------------------
# Build stage: the locked dependencies in /opt/venv, trimmed, every .pyc compiled.
FROM python:${PYTHON_VERSION}-slim AS build

ARG FLAVOR=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# strip (binutils) for the trim below; this stage only, the runtime stage has no toolchain.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# --no-deps: the lock file is the whole list, every file checked against its hash. The trim
# leaves what serving loads: out go TensorFlow's C++ headers (for building custom ops), the test
# suites packages ship, and the symbol tables of TensorFlow's shared libraries (debugging
# information; strip --strip-unneeded keeps what the dynamic linker needs). Then every .pyc,
# once: hash-based and unchecked, so identical from build to build, and nothing is written or
# re-validated at run time (the venv is read-only to the app's user anyway).
COPY requirements/ /tmp/requirements/
RUN case "$FLAVOR" in \
        cpu|gpu) ;; \
        *) echo "FLAVOR must be cpu or gpu, not '$FLAVOR'" >&2; exit 1 ;; \
    esac \
    && pip install --no-deps --require-hashes --no-compile -r "/tmp/requirements/image-$FLAVOR.txt" \
    && site=$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
    && rm -rf "$site/tensorflow/include" \
    && find "$site" -depth -type d -name tests -exec rm -rf {} + \
    && find "$site/tensorflow" -type f -name '*.so*' -exec strip --strip-unneeded {} + \
    && python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# The project's metadata (name, version, licence) as an installed package has it, made by
# setuptools from pyproject.toml: the service reads its version from it (GET /v2, the OpenAPI
# document). Apart from the venv, so a new version leaves the venv's layer as it is.
COPY pyproject.toml README.md /tmp/project/
WORKDIR /tmp/project
RUN mkdir /tmp/metadata \
    && python -c "import setuptools; setuptools.setup()" -q dist_info --output-dir /tmp/metadata

# ---------------------------------------------------------------------------------------------
# Runtime stage: the venv, the code and the models; no compilers, caches or tests.
FROM python:${PYTHON_VERSION}-slim AS runtime

ARG PYTHON_VERSION
ARG FLAVOR=cpu
LABEL org.opencontainers.image.title="keras-inference-service" \
      org.opencontainers.image.description="REST inference for the IMDB sentiment and MNIST digits Keras models" \
      org.opencontainers.image.licenses="MIT" \
      io.keras-inference-service.flavor="${FLAVOR}"

# HOST, PORT, MODEL_DIR and WORKERS are settings of app/config.py, like every variable the app
# reads: set any of them with `docker run -e NAME=value` (or docker-compose.yml's environment).
# WORKERS=auto: a worker per CPU the container may use, fewer if its memory limit is tight, and
# one when it serves on a GPU (each worker would claim the whole GPU); see app/workers.py.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_DIR=/app/models \
    WORKERS=auto

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

# The dependencies, then the service's metadata and code in the venv's site-packages as if
# installed (so `python -m app` finds it from any folder) but in layers of their own: a change
# to the code leaves the venv's layer as it is. /app holds only the models.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /tmp/metadata/ /opt/venv/lib/python${PYTHON_VERSION}/site-packages/
COPY app/ /opt/venv/lib/python${PYTHON_VERSION}/site-packages/app/
WORKDIR /app
COPY models/ models/

USER 10001:10001
EXPOSE 8000

# Ready once every model is loaded and warmed up; slim images have no curl, so python it is.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=4)"]

# Exec form: python is PID 1 and gets SIGTERM, so uvicorn drains in-flight requests and exits 0.
CMD ["python", "-m", "app"]
