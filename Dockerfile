FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY devices devices
COPY ingest ingest
COPY mapping mapping
COPY dashboard dashboard
COPY villagetwin villagetwin
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin vt
# Never root at run time; the same unprivileged user docker-compose.yml names.
USER 10001:10001
ENV VT_STATE_DIR=/tmp/villagetwin
