# syntax=docker/dockerfile:1
#
# One image for every Alongside service. Choose the service when building
# (--build-arg SERVICE=referrals, which sets the default) or when running
# (-e SERVICE=referrals): the entrypoint runs
#   nameko run --config services/<SERVICE>/config.yaml services.<SERVICE>.service:<Name>Service
# from /app. SERVICE_CLASS overrides the class name where it does not follow
# that rule. Settings come from the environment (see services/*/config.yaml);
# the HTTP port (health, metrics) is 8080 unless <SERVICE>_HTTP_ADDRESS says
# otherwise.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# --- builder: the virtualenv with the pinned runtime dependencies ----------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# A compiler for any dependency without a wheel for this platform; this stage
# is thrown away, so it costs build time only (and its version need no pin).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt

# --- runtime: slim Python, the virtualenv, the code, a non-root user --------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

ARG SERVICE=""
ENV SERVICE=${SERVICE} \
    HTTP_PORT=8080 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 alongside \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin alongside

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root: the service user can read it, not change it.
COPY shared/ shared/
COPY services/ services/
# Compiled once here, as the root filesystem is read-only at run time.
RUN python -m compileall -q shared services

COPY --chmod=0755 <<'EOF' /usr/local/bin/alongside-service
#!/bin/sh
# Runs the Alongside service named by SERVICE (a folder of services/ with a
# config.yaml), from the working directory (/app in the image).
set -eu

known() {
    for config in services/*/config.yaml; do
        name=${config%/config.yaml}
        printf ' %s' "${name#services/}"
    done
}

case "${SERVICE:-}" in
    "" | *[!a-z0-9_]*)
        echo "alongside-service: set SERVICE to one of:$(known)" >&2
        exit 64 ;;
esac
if [ ! -f "services/$SERVICE/config.yaml" ]; then
    echo "alongside-service: no service '$SERVICE'; one of:$(known)" >&2
    exit 64
fi

first=$(printf '%s' "$SERVICE" | cut -c1 | tr '[:lower:]' '[:upper:]')
rest=$(printf '%s' "$SERVICE" | cut -c2-)
class="${SERVICE_CLASS:-${first}${rest}Service}"

# In a container the HTTP port listens on every interface unless told otherwise.
address_var="$(printf '%s' "$SERVICE" | tr '[:lower:]' '[:upper:]')_HTTP_ADDRESS"
eval "address=\${${address_var}:-}"
if [ -z "$address" ]; then
    export "${address_var}=0.0.0.0:${HTTP_PORT:-8080}"
fi

exec nameko run --config "services/$SERVICE/config.yaml" \
    "services.$SERVICE.service:$class" "$@"
EOF

USER 10001:10001
EXPOSE 8080

# No curl in slim images: Python asks /health/live on the service's own port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; address = os.environ.get(os.environ.get('SERVICE', '').upper() + '_HTTP_ADDRESS') or ':' + os.environ.get('HTTP_PORT', '8080'); port = address.rsplit(':', 1)[1]; response = urllib.request.urlopen('http://127.0.0.1:' + port + '/health/live', timeout=4); sys.exit(0 if response.status == 200 else 1)"]

ENTRYPOINT ["/usr/local/bin/alongside-service"]
