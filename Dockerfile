FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY devices devices
COPY ingest ingest
COPY mapping mapping
COPY dashboard dashboard
COPY villagetwin villagetwin
# The versions in uv.lock (hash-checked), then the project itself without resolving again.
RUN pip install --no-cache-dir uv \
    && uv export --locked --no-dev --no-emit-project -o /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip install --no-cache-dir --no-deps . \
    && pip uninstall -y uv && rm /tmp/requirements.txt
USER nobody
ENV VT_STATE_DIR=/tmp/villagetwin
