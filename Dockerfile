# The ingest worker. Built by docker-compose.yml; standalone:
#   docker build -t faaslens-worker . && docker run -p 127.0.0.1:8518:8518/udp faaslens-worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and code; README.md* so the build works before the README exists.
COPY pyproject.toml README.md* ./
COPY shipper ./shipper
COPY ingest ./ingest
COPY faaslens ./faaslens
COPY es-templates ./es-templates
RUN pip install '.[ingest]'

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin faaslens \
    && mkdir -p /app/var \
    && chown faaslens /app/var

# Spool and dead letters under /app/var (a volume per container).
ENV FAASLENS_STATE_DIR=/app/var

USER faaslens
VOLUME ["/app/var"]
EXPOSE 8518/udp 8518/tcp 9108/tcp

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=3)"]

ENTRYPOINT ["faaslens"]
CMD ["ingest", "--udp-listen=0.0.0.0:8518", "--tcp-listen=0.0.0.0:8518", "--http-listen=0.0.0.0:9108", "--es-url=http://elasticsearch:9200"]
