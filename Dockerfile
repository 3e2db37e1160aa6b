# task-orchestrator: one image for both services.
#   docker run IMAGE                                   -> the scheduler (orchestrator-scheduler)
#   docker run IMAGE orchestrator-worker --scheduler scheduler:50051
# Multi-stage: the wheel is built in a throw-away stage; the runtime stage has no compiler
# and runs as an unprivileged user.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY clients ./clients
COPY scheduler_service ./scheduler_service
COPY worker_service ./worker_service
# With the tracing extra, so that ORCHESTRATOR_OTLP_ENDPOINT works in the image, and the
# postgres extra (asyncpg), so that ORCHESTRATOR_DATABASE may be a postgresql:// URL
# (docker-compose.postgres.yml).
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[tracing,postgres]'

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 orchestrator \
    && mkdir -p /data /work \
    && chown orchestrator /data /work
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER orchestrator
WORKDIR /work
# Listen on all interfaces inside the container; the database lives on the /data volume.
# Beyond loopback the scheduler needs TLS and authentication (ORCHESTRATOR_TLS_CERT,
# ORCHESTRATOR_TLS_KEY, ORCHESTRATOR_AUTH_TOKENS or ORCHESTRATOR_TLS_CLIENT_CA), or
# ORCHESTRATOR_INSECURE=true: it refuses to start otherwise (README "Security").
ENV ORCHESTRATOR_LISTEN=0.0.0.0:50051 \
    ORCHESTRATOR_HTTP_LISTEN=0.0.0.0:8080 \
    ORCHESTRATOR_DATABASE=/data/orchestrator.db \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 50051 8080
# /healthz is open; with TLS on it is HTTPS (a probe of this container's own loopback).
HEALTHCHECK --interval=10s --timeout=3s \
    CMD python -c "import os,ssl,urllib.request as u; s='https' if os.environ.get('ORCHESTRATOR_TLS_CERT') else 'http'; u.urlopen(s+'://127.0.0.1:8080/healthz', timeout=2, context=ssl._create_unverified_context())" || exit 1
CMD ["orchestrator-scheduler"]
