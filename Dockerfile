# syntax=docker/dockerfile:1
# EphemeralChat: `docker build -t ephemeralchat .`, then `docker compose up` (one instance
# and Redis) or `docker compose -f deploy/docker-compose.yml up` (nginx, three instances).

# --- builder: turn the source into a wheel and a self-contained virtualenv ---------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# The locked dependencies first, exactly and hash-checked (requirements/update makes the
# file): this layer is rebuilt only when the lock changes, not on every source edit.
COPY requirements/server.txt ./requirements/server.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r requirements/server.txt
COPY pyproject.toml README.md ./
COPY chat ./chat
COPY ephemeralchat_client ./ephemeralchat_client

# The wheel, not the source tree, goes into the venv: the final image then holds only what
# the package declares (code, static files, entry points), never tests or build leftovers.
# --no-deps: its dependencies are the locked ones above, never re-resolved here.
# pip and setuptools leave afterwards: nothing installs anything at run time.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- final: the interpreter, the venv, an unprivileged user; no compilers, no pip cache ---
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000

RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home --shell /usr/sbin/nologin chat

COPY --from=builder /opt/venv /opt/venv

# /app is the working directory so an optional .env mounted there is read; LOG_FILE=/app/logs/...
# works because the directory belongs to the user the server runs as.
WORKDIR /app
USER 10001:10001

EXPOSE 8000

# Liveness only: /readyz (backend reachable, not draining) is for load balancers, and a
# Redis outage must not get healthy instances restarted.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# Exec form: the server is PID 1 and gets SIGTERM itself, so `docker stop` drains
# (every socket gets a system message and close 1001) instead of killing mid-frame.
STOPSIGNAL SIGTERM
CMD ["ephemeralchat"]
