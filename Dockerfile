# The inference service as a container image.
#
#   docker build -t keras-inference-service .                      # CPU (default)
#   docker build -t keras-inference-service:gpu --build-arg FLAVOR=gpu .
#
# FLAVOR=gpu installs the `gpu` extra (tensorflow[and-cuda]): the CUDA libraries come as pip
# wheels, so the base stays python:slim and the host needs only the NVIDIA driver and the NVIDIA
# Container Toolkit. tests/docker/test_dockerfile_install.py replays the build stage's install
# steps and the runtime stage's layout and CMD, so keep them simple shell.

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------------------------
# Build stage: install the project (not editable) and its dependencies into /opt/venv.
FROM python:${PYTHON_VERSION}-slim AS build

ARG FLAVOR=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, in a layer of their own, so that a change to the code or the README does
# not reinstall TensorFlow: pyproject.toml alone installs them (with an empty project).
COPY pyproject.toml ./
RUN touch README.md \
    && case "$FLAVOR" in \
        cpu) pip install --no-cache-dir . ;; \
        gpu) pip install --no-cache-dir "./[gpu]" ;; \
        *) echo "FLAVOR must be cpu or gpu, not '$FLAVOR'" >&2; exit 1 ;; \
    esac
# Then the project itself, not editable: app/ (and training/) go into site-packages.
COPY README.md ./
COPY app/ app/
COPY training/ training/
RUN pip install --no-cache-dir --no-deps --force-reinstall .

# ---------------------------------------------------------------------------------------------
# Runtime stage: the venv and the models, no compilers, caches, sources or tests.
FROM python:${PYTHON_VERSION}-slim AS runtime

ARG FLAVOR=cpu
LABEL org.opencontainers.image.title="keras-inference-service" \
      org.opencontainers.image.description="REST inference for the IMDB sentiment and MNIST digits Keras models" \
      org.opencontainers.image.licenses="MIT" \
      io.keras-inference-service.flavor="${FLAVOR}"

# HOST, PORT and MODEL_DIR are settings of app/config.py, like every variable the app reads:
# set any of them with `docker run -e NAME=value` (or docker-compose.yml's environment).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_DIR=/app/models

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

# The app itself lives in the venv's site-packages (installed, not editable); /app holds only
# the models, so `python -m app` imports the installed package.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY models/ models/

USER 10001:10001
EXPOSE 8000

# Ready once every model is loaded and warmed up; slim images have no curl, so python it is.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=4)"]

# Exec form: python is PID 1 and gets SIGTERM, so uvicorn drains in-flight requests and exits 0.
CMD ["python", "-m", "app"]
