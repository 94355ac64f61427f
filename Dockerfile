# syntax=docker/dockerfile:1
# edgecache node image. Build from the repository root (network: the Python package index only):
#   docker build -t edgecache:0.1.0 .
# Run one node with your config and a named volume for the disk tier:
#   docker run -d --name edge -p 8080:8080 -v edge-cache:/var/cache/edgecache \
#     -v "$PWD/config.toml:/etc/edgecache/config.toml:ro" edgecache:0.1.0 --config /etc/edgecache/config.toml --node edge1
# tests/deploy/test_dockerfile.py checks this file's rules (Docker itself does not run in CI).

# The lowest supported Python (the one CI tests); slim Debian, no compiler: every dependency
# ships manylinux wheels.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/edgecache
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY edge ./edge
COPY origin ./origin
COPY cluster ./cluster
# a regular (non-editable) install: the wheel carries the node, never the demo origin or tests
RUN /opt/edgecache/bin/pip install . \
    && /opt/edgecache/bin/edgecache --help > /dev/null

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/edgecache/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 edgecache \
    && useradd --system --uid 10001 --gid edgecache --no-create-home \
       --home-dir /var/cache/edgecache --shell /usr/sbin/nologin edgecache \
    && install -d -o edgecache -g edgecache -m 0750 /var/cache/edgecache
COPY --from=build /opt/edgecache /opt/edgecache
COPY deploy/docker/config.toml /etc/edgecache/config.toml
# the disk tier and purge journal: keep it on a volume so a new container keeps the cache
VOLUME ["/var/cache/edgecache"]
# public HTTP, peer traffic, admin API
EXPOSE 8080 9080 7080
USER 10001:10001
# SIGTERM drains: readiness turns 503, in-flight requests finish, the node leaves the ring
STOPSIGNAL SIGTERM
# readiness of the public listener; EDGECACHE_READY_URL overrides it when the node listens
# elsewhere. No proxy: the probe always goes to the node itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open(os.environ.get('EDGECACHE_READY_URL', 'http://127.0.0.1:8080/_edge/ready'), timeout=2)"]
# exec form: the node is PID 1 and receives SIGTERM itself
ENTRYPOINT ["edgecache"]
CMD ["--config", "/etc/edgecache/config.toml", "--node", "edge"]
