# s3proxy: slim, non-root, the console script as entry point.
# Build: docker build -t s3proxy .      Run: see docker-compose.yml (s3proxy in front of MinIO).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY s3proxy ./s3proxy
# the postgres extra: keystore_url = postgresql://... (docker-compose.scale.yml)
RUN pip install --no-cache-dir --prefix=/install './[postgres]'

FROM python:3.11-slim
# /data: keystore, audit log, credentials (and objects with the fs backend); /keys: the KMS root key.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home s3proxy \
    && mkdir -p /data /keys \
    && chown s3proxy:s3proxy /data /keys \
    && chmod 0700 /data /keys
COPY --from=build /install /usr/local
USER 10001:10001
WORKDIR /data
ENV PYTHONUNBUFFERED=1 \
    S3PROXY_HOST=0.0.0.0 \
    S3PROXY_PORT=8080 \
    S3PROXY_DATA_DIR=/data \
    S3PROXY_ROOT_KEY_FILE=/keys/root.key
EXPOSE 8080
VOLUME ["/data", "/keys"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["s3proxy"]
CMD ["serve"]
