FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY devices devices
COPY ingest ingest
COPY mapping mapping
COPY dashboard dashboard
COPY villagetwin villagetwin
RUN pip install --no-cache-dir .
USER nobody
ENV VT_STATE_DIR=/tmp/villagetwin
