#!/bin/sh
# Installs the operations tools the deploy and ops tests use, from the
# registries this project's machines reach:
#   promtool and prometheus   Debian's `prometheus` package (rule tests, and a
#                             real Prometheus scraping the services)
#   kubectl (kustomize)       not installed here: tests/deploy renders the
#                             overlays with it where it is on PATH and checks
#                             the manifests against the Kubernetes JSON
#                             schemas (kubernetes-validate, from
#                             requirements-dev.txt) everywhere.
#
#   sh infra/tools/install.sh          # as root, or with sudo on PATH
#
# Idempotent: does nothing when promtool is already on PATH. It never leaves a
# Prometheus running as a system service: the package's postinst would start
# one on :9090 for ever, so service starts are refused while it installs
# (policy-rc.d) and any instance the install started anyway is stopped.
set -eu

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    echo "install.sh: promtool and prometheus are installed ($(promtool --version 2>&1 | head -n 1))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n sh "$0" "$@"
    fi
    echo "install.sh: run as root (apt-get install prometheus)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: no apt-get; install Prometheus 2.x (prometheus and promtool) by hand" >&2
    exit 1
fi

# Refuse service starts while installing, unless a policy already does.
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    created_policy=yes
fi
cleanup() {
    if [ -n "$created_policy" ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or old on a fresh machine.
if ! apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus
fi

# If an init system started it all the same, stop that instance (by its pid
# file or by the service manager, never by name).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
elif [ -f /run/prometheus.pid ]; then
    kill "$(cat /run/prometheus.pid)" 2>/dev/null || true
fi

echo "install.sh: $(promtool --version 2>&1 | head -n 1)"
