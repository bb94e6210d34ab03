# syntax=docker/dockerfile:1
# Zyron's image: `zyron serve` on the locked dependencies (uv.lock, installed by uv), without
# the local model (LOCAL_MODEL=0 in the Makefile's sense), run by a user that is not root.
# deploy/compose.yaml runs three of it behind HAProxy; docs/deploy.md says what was tested.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# The uv the Makefile bootstraps (UV_VERSION there), from PyPI as it does.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# The dependencies first, in a layer that changes only with the lock file; no dev group, no
# `local` extra (llama.cpp and the model file).
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# Then Zyron itself, installed (not editable): the image needs no source tree.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN groupadd --system --gid 10001 zyron \
    && useradd --system --uid 10001 --gid zyron --home-dir /app --no-create-home zyron \
    && mkdir -p /app /data \
    && chown zyron:zyron /data
COPY --from=build /app/.venv /app/.venv
# HOST 0.0.0.0: reached from the proxy's container. ZYRON_DATA_DIR holds uploaded files when
# STORAGE_BACKEND is local (replicas then need one shared volume, or S3: docs/attachments.md).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    ZYRON_DATA_DIR=/data \
    LOCAL_MODEL=0
WORKDIR /app
USER zyron
EXPOSE 8000
# For `docker run`; compose and orchestrators check /health themselves. 503 while draining.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=2 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
# SIGTERM drains (docs/deploy.md); give the container longer than DRAIN_TIMEOUT_SECONDS.
STOPSIGNAL SIGTERM
CMD ["zyron", "serve"]
