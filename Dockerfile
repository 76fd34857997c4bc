# syntax=docker/dockerfile:1.7
# jobqueue: one image for every role (producer, worker, all, admin, operator).
#
#   docker build -t job-queue-system:latest .
#   docker run --rm -p 9090:9090 --env-file env.list job-queue-system:latest --role=all
#
# Config: /config/config.yaml when mounted (e.g. -v ./config:/config:ro), otherwise defaults;
# environment variables (REDIS_ADDR, REDIS_PASSWORD, WORKER_COUNT, ...) override either.
# tests/packaging/test_wheel.py reproduces the install steps below in a fresh venv.

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- build: wheels only
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Compilers live in this stage only, for dependencies without a wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY operator ./operator
# The project's wheel, then wheels of everything it needs (the operator extra included,
# so the same image runs --role=operator).
RUN pip wheel --wheel-dir /wheels ".[operator]"

# ---------------------------------------------------------------- final: no compilers
FROM python:${PYTHON_VERSION}-slim-bookworm AS final
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.title="job-queue-system" \
      org.opencontainers.image.description="jobqueue: a reliable Redis job queue with a Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/jobqueue \
    PATH=/opt/jobqueue/bin:$PATH
# Offline install from the wheels built above; nothing is compiled here.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv "$VIRTUAL_ENV" \
 && "$VIRTUAL_ENV/bin/pip" install --no-index --find-links /wheels "jobqueue[operator]" \
 && "$VIRTUAL_ENV/bin/pip" uninstall -y pip setuptools
# Fixed numeric ids so Kubernetes' runAsNonRoot can verify them without a passwd lookup.
RUN groupadd --system --gid 10001 jobqueue \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/jobqueue --create-home \
        --shell /usr/sbin/nologin jobqueue \
 && mkdir -p /config /data \
 && chown 10001:10001 /data
WORKDIR /home/jobqueue
USER 10001:10001
# /data: the producer's default scan_dir; /config: mount config.yaml here.
ENV PRODUCER_SCAN_DIR=/data
VOLUME ["/data"]
EXPOSE 9090
# /healthz answers 200 while the process is up (the HTTP server of every role but admin).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["job-queue-system", "--config=/config/config.yaml"]
CMD ["--role=all"]
