# syntax=docker/dockerfile:1
# recsys-pipeline: the recsys library environment (requirements.txt + the recsys package) and its CLI.
# One image, three uses: the pipeline commands (`docker run recsys-pipeline:TAG train ...`, compose's recsys-init),
# the MLflow tracking server (mlflow is pinned in requirements.txt), and the pods of Airflow's
# KubernetesPodOperator tasks (RECSYS_AIRFLOW_IMAGE).
# Build from the repository root:  docker build -f docker/pipeline.Dockerfile -t recsys-pipeline:TAG .
# The base is pinned by version here; CI should pin it by digest too (docker/README.md, "Pinning by digest").

# --- builder: resolve nothing, install the lock ----------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS builder

# uv installs the 267 pinned packages, as `make setup` does, at the Makefile's UV_VERSION.
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/uv \
    && /opt/uv/bin/pip install "uv==${UV_VERSION}" \
    && python -m venv /opt/recsys/venv

# The lock alone first: this layer is rebuilt only when requirements.txt changes, not on every code edit.
COPY requirements.txt /tmp/requirements.txt
RUN /opt/uv/bin/uv pip install --python /opt/recsys/venv/bin/python -r /tmp/requirements.txt

COPY pyproject.toml README.md /src/
COPY recsys /src/recsys
# --no-deps: requirements.txt is the single source of the dependencies (pyproject's list is empty on purpose).
# Not editable: the image carries a copy of the package, not a link to a checkout.
# Bytecode once, at build time: the venv is read-only for the runtime user, so nothing could cache it later and
# every process would recompile its imports from source (Great Expectations: ~7 s instead of ~2.7 s).
RUN /opt/uv/bin/uv pip install --python /opt/recsys/venv/bin/python --no-deps /src \
    && /opt/recsys/venv/bin/python -m compileall -q -j 0 /opt/recsys/venv/lib >/dev/null

# --- runtime -------------------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm

ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="recsys-pipeline" \
      org.opencontainers.image.description="recsys library env: the pipeline CLI, the MLflow server, Airflow's pod tasks" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.licenses="Apache-2.0"

# libgomp1: LightGBM's OpenMP runtime, the only shared library the wheels do not bundle.
# DL3008 (apt versions): Debian's security updates remove the superseded version from the archive, so a pinned
# version stops building within weeks; the base image's digest (CI) pins the distribution snapshot instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# uid 10001, the uid Airflow's pod tasks run this image as (plugins/recsys_airflow/runner.py: run_as_user) and
# the Kubernetes manifests use. Group 0 owns the writable folders (mode 2775, setgid), so any uid in group 0 can
# write them: compose runs recsys-init as Airflow's uid 50000 (gid 0) on volumes it shares with the Airflow
# image, and OpenShift-style arbitrary uids work too.
RUN useradd --uid 10001 --gid 0 --no-log-init --home-dir /home/recsys --shell /usr/sbin/nologin recsys \
    && install -d -o 10001 -g 0 -m 2775 /home/recsys /srv/recsys /srv/recsys/data /srv/recsys/var \
        /srv/mlflow /srv/mlflow/artifacts

COPY --from=builder /opt/recsys/venv /opt/recsys/venv
COPY params.yaml /opt/recsys/params.yaml
COPY configs /opt/recsys/configs

# OPENBLAS_NUM_THREADS=1: numpy's BLAS pool would otherwise spin one thread per core in every process;
# OMP_WAIT_POLICY=PASSIVE: LightGBM's OpenMP threads sleep between calls instead of burning the CPU.
# HOME is set, not looked up: a uid without a passwd entry (a pod's runAsUser) would otherwise get HOME=/.
ENV PATH=/opt/recsys/venv/bin:$PATH \
    RECSYS_GIT_SHA=${GIT_SHA} \
    VIRTUAL_ENV=/opt/recsys/venv \
    HOME=/home/recsys \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_WAIT_POLICY=PASSIVE \
    GX_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    RECSYS_DATA_DIR=/srv/recsys/data \
    RECSYS_VAR_DIR=/srv/recsys/var \
    RECSYS_PARAMS_FILE=/opt/recsys/params.yaml

WORKDIR /srv/recsys
USER 10001:0

# Imports the settings and the CLI (the modules every command loads): a broken venv or a missing shared library
# (libgomp1) fails it, while a plain `true` would not. It says nothing about a server; compose probes those.
HEALTHCHECK --interval=5m --timeout=30s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import lightgbm, recsys.settings, recsys.cli; recsys.settings.Settings()"]

ENTRYPOINT ["recsys"]
CMD ["--help"]
