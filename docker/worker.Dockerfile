# Worker image: one `augsearch worker` process per GPU, on the official CUDA PyTorch image.
# Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t augsearch-worker:0.1.0 .
#
# The tag's torch version must equal the torch pin in pyproject.toml (tests/deploy checks it),
# so that pip keeps the base image's CUDA build instead of downloading another torch.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime

FROM ${PYTORCH_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUGSEARCH_DATA_DIR=/data
COPY docker/requirements-s3.txt /tmp/requirements-s3.txt
COPY pyproject.toml README.md /src/
COPY ops /src/ops
COPY search /src/search
COPY service /src/service
# Refuse the build if pip swapped the base image's torch for another one.
RUN before="$(python -c 'import torch; print(torch.__version__)')" \
    && pip install /src -r /tmp/requirements-s3.txt \
    && after="$(python -c 'import torch; print(torch.__version__)')" \
    && test "$before" = "$after" \
    && rm -rf /src
RUN groupadd --system --gid 10001 augsearch \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/augsearch augsearch \
    && mkdir -p /data/artifacts \
    && chown -R 10001:10001 /data
WORKDIR /home/augsearch
USER 10001:10001
VOLUME ["/data"]
# Exec form: the worker is PID 1's direct child under `init: true` and receives SIGTERM itself,
# which lets it drain the running trial.
ENTRYPOINT ["augsearch", "worker"]
# The container sees only the GPUs it was given; the worker's own default device is the CPU.
CMD ["--device", "cuda"]
