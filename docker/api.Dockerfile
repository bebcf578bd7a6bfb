# API image: REST API, dashboard, reconciler and CLI, without the GPU stack (no torch).
# Build from the repository root:
#   docker build -f docker/api.Dockerfile -t augsearch-api:0.1.0 .
#
# Python 3.12 rather than the 3.11 floor: the API extracts uploaded tar archives, and 3.12.11+
# carries the June-2025 tarfile fixes.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, so that a source change reuses this layer.
COPY docker/requirements-api.txt docker/requirements-s3.txt /tmp/
RUN pip install -r /tmp/requirements-api.txt -r /tmp/requirements-s3.txt

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUGSEARCH_DATA_DIR=/data
RUN groupadd --system --gid 10001 augsearch \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/augsearch augsearch \
    && mkdir -p /data/artifacts \
    && chown -R 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
# Sources stay in /app with alembic/ beside the packages, where service/db/migrate.py looks
# for the migrations; --no-deps because the project declares torch, which this image omits.
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ops ops
COPY search search
COPY service service
COPY alembic alembic
RUN pip install --no-cache-dir --no-deps --editable /app
# Fails the build when the CLI cannot start without torch.
RUN augsearch --help > /dev/null
# Numeric ids let Kubernetes verify runAsNonRoot.
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["augsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
