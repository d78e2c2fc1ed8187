# syntax=docker/dockerfile:1
#
# One image for every Alongside service. Choose the service when building
# (--build-arg SERVICE=referrals, which sets the default) or when running
# (-e SERVICE=referrals): the entrypoint runs
#   nameko run --config services/<SERVICE>/config.yaml services.<SERVICE>.service:<Name>Service
# from /app. SERVICE_CLASS overrides the class name where it does not follow
# that rule. Settings come from the environment (see services/*/config.yaml);
# the HTTP port (health, metrics, the gateway's API) is 0.0.0.0:8080 unless
# the variables the service's WEB_SERVER_ADDRESS reads say otherwise
# (<SERVICE>_HTTP_ADDRESS, or GATEWAY_HOST and GATEWAY_PORT for the gateway).

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

# The HTTP address. nameko listens on WEB_SERVER_ADDRESS from the config,
# whose defaults suit a laptop (loopback, a port per service); in a container
# it is every interface and HTTP_PORT (8080) unless set. A config reads its
# address in one of two ways: ${<SERVICE>_HTTP_ADDRESS:host:port} (referrals,
# reporting, training, matching) or ${<SERVICE>_HOST:host}:${<SERVICE>_PORT:port}
# (gateway). Both
# get the container default, whichever the service reads: one rule, no list
# of services; a variable a config does not read is ignored. The image's
# HEALTHCHECK applies the same defaults (it does not see these exports).
prefix=$(printf '%s' "$SERVICE" | tr '[:lower:]' '[:upper:]')
port=${HTTP_PORT:-8080}
for setting in "_HTTP_ADDRESS=0.0.0.0:$port" "_HOST=0.0.0.0" "_PORT=$port"; do
    name="$prefix${setting%%=*}"
    eval "current=\${$name:-}"
    if [ -z "$current" ]; then
        export "$name=${setting#*=}"
    fi
done

# Then read the address as nameko will (shared.config is its parser) and
# check it has the form nameko accepts, [host:]port, so that one that cannot
# work stops here with a clear message rather than in a crash loop. A likely
# miss: GATEWAY_PORT=tcp://<ip>:8080, which Kubernetes injects for a Service
# named gateway unless the pod sets enableServiceLinks: false.
python -c '
import os, re, sys
from shared.config import load_service_config
service = os.environ["SERVICE"]
address = str(load_service_config(service)["WEB_SERVER_ADDRESS"])
if not re.fullmatch(r"([^:]+:)?[0-9]+", address):  # nameko.web.server.parse_address
    sys.exit("alongside-service: %s would listen on %r, not [host:]port; see what"
             " WEB_SERVER_ADDRESS reads in services/%s/config.yaml"
             % (service, address, service))
' || exit 78

exec nameko run --config "services/$SERVICE/config.yaml" \
    "services.$SERVICE.service:$class" "$@"
EOF

USER 10001:10001
EXPOSE 8080

# No curl in slim images: Python asks /health/ready (broker and database
# reachable) on the service's own port, found as the entrypoint finds it: the
# same container defaults, then the address from the service's config
# (shared.config). compose's depends_on: service_healthy waits for it, so a
# caller starts once the service it calls can answer; Kubernetes ignores
# HEALTHCHECK and uses the Deployment's probes (k8s/).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; \
service = os.environ.get('SERVICE', ''); prefix = service.upper(); port = os.environ.get('HTTP_PORT') or '8080'; \
os.environ.update({name: os.environ.get(name) or value for name, value in ((prefix + '_HTTP_ADDRESS', '0.0.0.0:' + port), (prefix + '_HOST', '0.0.0.0'), (prefix + '_PORT', port))}); \
from shared.config import load_service_config; \
address = str(load_service_config(service)['WEB_SERVER_ADDRESS']); \
response = urllib.request.urlopen('http://127.0.0.1:' + address.rpartition(':')[2] + '/health/ready', timeout=4); \
sys.exit(0 if response.status == 200 else 1)"]

ENTRYPOINT ["/usr/local/bin/alongside-service"]
