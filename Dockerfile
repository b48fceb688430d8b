# One image for every process in the Procfile: release, web, worker, dispatcher, scheduler.
# The command picks the process (docker-compose.yml and deploy/kubernetes/ set it); the default is
# `web`. Browsers are Debian's chromium and chromium-driver at the paths the settings default to
# (CHROMIUM_PATH, CHROMEDRIVER_PATH): nothing is downloaded at run time.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHROMIUM_PATH=/usr/bin/chromium \
    CHROMEDRIVER_PATH=/usr/bin/chromedriver \
    API_HOST=0.0.0.0 \
    PORT=8000 \
    WORKSPACE_DIR=/workspace \
    PROMETHEUS_MULTIPROC_DIR=/tmp/understudy-metrics

# fonts-liberation: pages render with real metrics in screenshots; tini reaps Chromium's children
# and forwards SIGTERM, so Celery's warm shutdown sees it. Versions are not pinned: the stable
# release's security updates replace them, and an old pin would stop the image from building.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium chromium-driver fonts-liberation tini \
    && rm -rf /var/lib/apt/lists/*

# A writable home: Chromium keeps a few files under $HOME even with its profile elsewhere.
RUN groupadd --system --gid 10001 understudy \
    && useradd --system --uid 10001 --gid understudy --create-home --home-dir /home/understudy \
       --shell /usr/sbin/nologin understudy \
    && mkdir -p /app /workspace \
    && chown understudy:understudy /workspace

WORKDIR /app
# Only the packages and what pip needs to install them (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY api/ api/
COPY worker/ worker/
COPY dispatcher/ dispatcher/
COPY scheduler/ scheduler/
COPY shared/ shared/
COPY sandbox/ sandbox/
COPY cli/ cli/
COPY clients/python/ clients/python/
COPY Procfile ./
RUN pip install --no-cache-dir ./clients/python .

# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000

# For `web`: /healthz is liveness (answered from memory, never delayed by busy threads). Workers,
# the dispatcher and the scheduler serve no HTTP: their containers override or disable this
# (docker-compose.yml sets `healthcheck: disable: true`; Kubernetes ignores HEALTHCHECK).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2).status == 200 else 1)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["gunicorn", "-c", "python:api.gunicorn_conf", "api:create_app()"]
