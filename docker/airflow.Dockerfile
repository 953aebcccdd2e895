# syntax=docker/dockerfile:1
# recsys-airflow: the official Airflow 3.3.2 image, the providers the DAGs use, this repository's dags/ and
# plugins/, and the recsys library env as a venv of its own (/opt/recsys/venv) that the tasks run as a subprocess
# (RECSYS_AIRFLOW_RUNNER=local). The two environments never share a resolver: Airflow's constraints stay whole.
# Build from the repository root:  docker build -f docker/airflow.Dockerfile -t recsys-airflow:TAG .

# --- the recsys venv, built on the same base so that its interpreter path is the final image's ---------------
FROM apache/airflow:3.3.2-python3.11 AS recsys-env

ARG UV_VERSION=0.13.9
# PIP_USER=false: the Airflow image sets PIP_USER=true for its `airflow` user, which a venv's pip refuses.
ENV PIP_USER=false \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    PYTHONDONTWRITEBYTECODE=1

# /opt is root's: the venv is built by root and stays read-only for the runtime user. This stage never runs as a
# container (only its /opt/recsys/venv is copied), so DL3002 (last USER root) does not apply to it.
# hadolint ignore=DL3002
USER 0
RUN python -m venv /opt/uv \
    && /opt/uv/bin/pip install "uv==${UV_VERSION}" \
    && python -m venv /opt/recsys/venv

COPY requirements.txt /tmp/requirements.txt
RUN /opt/uv/bin/uv pip install --python /opt/recsys/venv/bin/python -r /tmp/requirements.txt

COPY pyproject.toml README.md /src/
COPY recsys /src/recsys
RUN /opt/uv/bin/uv pip install --python /opt/recsys/venv/bin/python --no-deps /src \
    && /opt/recsys/venv/bin/python -m compileall -q -j 0 /opt/recsys/venv/lib >/dev/null

# --- runtime -------------------------------------------------------------------------------------------------
FROM apache/airflow:3.3.2-python3.11

ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="recsys-airflow" \
      org.opencontainers.image.description="Airflow 3.3.2 with the recsys DAGs, plugins and library env" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 0
# libgomp1: LightGBM's OpenMP runtime, for the recsys venv's training tasks.
# DL3008 (apt versions): Debian's security updates remove the superseded version from the archive, so a pinned
# version stops building within weeks; the base image's digest (CI) pins the distribution snapshot instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
# The shared data/var volumes' mount points: owned by airflow (uid 50000), group 0, mode 2775 like the pipeline
# image's, so a fresh named volume starts writable for every uid of group 0, whichever image mounts it first.
RUN install -d -o 50000 -g 0 -m 2775 /srv/recsys /srv/recsys/data /srv/recsys/var /opt/airflow/auth

COPY --from=recsys-env /opt/recsys/venv /opt/recsys/venv
COPY params.yaml /opt/recsys/params.yaml
COPY configs /opt/recsys/configs

# 50000 is the image's `airflow` user (numeric: Kubernetes' runAsNonRoot can only verify a number).
USER 50000
# Only what the base lacks, at requirements-airflow.txt's pins, Airflow itself held at 3.3.2 (see the script).
COPY requirements-airflow.txt docker/airflow-providers.py /tmp/airflow-build/
RUN python /tmp/airflow-build/airflow-providers.py /tmp/airflow-build/requirements-airflow.txt

COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 plugins /opt/airflow/plugins

# The runner's defaults point into a checkout (<repo>/.venv/bin/recsys); here the library env is the image's venv
# and the working directory is where the shared volumes are mounted.
ENV RECSYS_AIRFLOW_RUNNER=local \
    RECSYS_GIT_SHA=${GIT_SHA} \
    RECSYS_AIRFLOW_RECSYS=/opt/recsys/venv/bin/recsys \
    RECSYS_AIRFLOW_WORKDIR=/srv/recsys \
    RECSYS_DATA_DIR=/srv/recsys/data \
    RECSYS_VAR_DIR=/srv/recsys/var \
    RECSYS_PARAMS_FILE=/opt/recsys/params.yaml \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    OPENBLAS_NUM_THREADS=1 \
    OMP_WAIT_POLICY=PASSIVE \
    GX_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

# Both environments import: the Airflow side's configuration (a bad RECSYS_AIRFLOW_* value fails it) and the
# library's CLI through the path the tasks run. Compose and Kubernetes probe each component's own endpoint.
HEALTHCHECK --interval=5m --timeout=60s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "cd /opt/airflow/plugins && python -c 'import recsys_airflow.config' && /opt/recsys/venv/bin/python -c 'import recsys.cli'"]
