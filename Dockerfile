# syntax=docker/dockerfile:1
#
# inference-service image: the router plus a llama-server built from the same pinned llama.cpp
# source that `make setup` builds. NOT BUILT on the project's machines (no container engine can
# pull base images there); its steps are the commands CI runs: `make build-deps`, then
# `inference-service runtime install`. tests/unit/deploy/test_dockerfile.py checks that.
#
#   CPU:   docker build -t inference-service .
#   CUDA:  docker build -t inference-service:cuda --build-arg CUDA=1 \
#            --build-arg BUILD_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04 \
#            --build-arg RUNTIME_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 .
#
#   docker run -p 8085:8085 -v models:/models \
#     -v $PWD/config.toml:/etc/inference-service/config.toml:ro inference-service
#   docker run --rm -v models:/models inference-service models pull   # fetch the models once
#
# Configuration: the mounted /etc/inference-service/config.toml, and INFERENCE_* variables
# (INFERENCE_API_KEY, INFERENCE_PORT, INFERENCE_MODELS__<ID>__URL ...), which win over the file.

ARG BUILD_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- build
FROM ${BUILD_IMAGE} AS build
ARG CUDA=0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INFERENCE_CACHE_DIR=/opt/inference-service/cache \
    INFERENCE_CONFIG=/src/config.toml
# make, and Python for the CUDA images (python:*-slim has it already).
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends make ca-certificates \
      $(command -v python3 >/dev/null || echo python3 python3-venv) \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile pyproject.toml README.md config.toml ./
# The C++ toolchain exactly as `make setup` gets it: cmake, g++ and ninja from apt.
RUN make build-deps
COPY inference_service ./inference_service
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --quiet .
# `make setup`'s own step; --cuda selects the CUDA build (cmake -DGGML_CUDA=ON) of the same source.
# Its last line of output is the binary's path; on PATH in the image, the service finds it there.
RUN built="$(/opt/venv/bin/inference-service runtime install $([ "$CUDA" = "1" ] && echo --cuda) | tail -n 1)" \
 && install -m 0755 "$built" /opt/venv/bin/llama-server

# --------------------------------------------------------------------------- runtime
FROM ${RUNTIME_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    INFERENCE_CONFIG=/etc/inference-service/config.toml \
    INFERENCE_MODELS_DIR=/models \
    INFERENCE_CACHE_DIR=/var/cache/inference-service \
    INFERENCE_PORT=8085
# tini: PID 1 forwards signals and reaps orphans (the children of an `ollama serve` the router
# stopped); libgomp1: llama-server's OpenMP threads.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends tini libgomp1 libstdc++6 ca-certificates \
      $(command -v python3 >/dev/null || echo python3) \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/cache/inference-service --create-home inference \
 && install -d -o inference -g inference /models /etc/inference-service
COPY --from=build /opt/venv /opt/venv
COPY --chown=inference:inference config.toml /etc/inference-service/config.toml
USER inference
VOLUME ["/models"]
EXPOSE 8085
# /health answers once the preload models are loaded (up to health_timeout_s each), then while
# the router runs; /health/ready would also fail when every model is idle-unloaded.
HEALTHCHECK --interval=15s --timeout=5s --start-period=330s --retries=3 \
  CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('INFERENCE_PORT', '8085'), timeout=4)"
# The router lets in-flight requests finish for shutdown_grace_s after SIGTERM: give it that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "inference-service"]
CMD ["serve", "--host", "0.0.0.0"]
