#!/bin/sh
# Healthcheck of compose's rabbitmq service: healthy once the node runs and
# the application user (RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS from the
# container's environment) can log in.
#
# It also creates that user the first time: RabbitMQ does not seed the default
# user when rabbitmq.conf sets load_definitions, and definitions.json carries
# no users so that no credential is committed.
set -eu

user="${RABBITMQ_DEFAULT_USER:?RABBITMQ_DEFAULT_USER is not set}"
pass="${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS is not set}"

if rabbitmqctl -q authenticate_user "$user" "$pass" >/dev/null 2>&1; then
    exit 0
fi

# Not up yet: unhealthy for now, the next check tries again.
rabbitmq-diagnostics -q check_running >/dev/null

# Fails, and so stays unhealthy, if the user exists with another password.
rabbitmqctl -q add_user "$user" "$pass" >/dev/null
if ! { rabbitmqctl -q set_user_tags "$user" administrator >/dev/null &&
       rabbitmqctl -q set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null; }; then
    # Undo, so that the next check starts over rather than pass half done.
    rabbitmqctl -q delete_user "$user" >/dev/null 2>&1 || true
    exit 1
fi
