"""Dead letters: list them, count them, replay them once the fault is fixed.

    python -m shared.deadletters list   SERVICE [--config FILE]
    python -m shared.deadletters replay SERVICE [EVENT_ID ...] [--config FILE]

Listing reads every message without acknowledging it and then hands them
all back, so nothing is lost by looking. Replay sends a message back to the
queue of the handler that failed, with its attempt count reset, and only
then removes it from the dead letters.
"""
import argparse
import json
import sys

from amqp.exceptions import NotFound as QueueNotFound
from kombu import Connection, Producer

from shared.config import load_service_config
from shared.messaging import ATTEMPT_HEADER, ERROR_HEADERS, dead_letter_queue


def _summary(message):
    body = message.payload
    headers = message.headers or {}
    return {
        "event_id": body.get("id") if isinstance(body, dict) else None,
        "type": body.get("type") if isinstance(body, dict) else None,
        "siteid": body.get("siteid") if isinstance(body, dict) else None,
        "queue": headers.get("x-alongside-queue"),
        "handler": headers.get("x-alongside-handler"),
        "attempts": headers.get("x-alongside-attempts"),
        "error": headers.get("x-alongside-error"),
        "dead_at": headers.get("x-alongside-dead-at"),
    }


def _fetch_all(channel, queue_name):
    messages = []
    while True:
        message = channel.basic_get(queue_name, no_ack=False)
        if message is None:
            return messages
        messages.append(message)


def count(amqp_uri, service_name):
    """How many messages wait in a service's dead-letter queue (0 if none)."""
    with Connection(amqp_uri, connect_timeout=3) as connection:
        try:
            _, depth, _ = connection.default_channel.queue_declare(
                f"{service_name}.dead-letters", passive=True)
        except QueueNotFound:
            return 0
        return depth


def list_dead_letters(amqp_uri, service_name):
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        dead_letter_queue(service_name)(channel).declare()
        raw = _fetch_all(channel, f"{service_name}.dead-letters")
        summaries = [_summary(channel.message_to_python(m)) for m in raw]
        channel.close()   # unacked messages go back to the queue, in order
        return summaries


def replay(amqp_uri, service_name, event_ids=None):
    """Replay dead letters (all, or those with the given event ids)."""
    wanted = set(event_ids or ())
    replayed = []
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        dead_letter_queue(service_name)(channel).declare()
        producer = Producer(connection.channel())
        for raw in _fetch_all(channel, f"{service_name}.dead-letters"):
            message = channel.message_to_python(raw)
            summary = _summary(message)
            if wanted and summary["event_id"] not in wanted:
                continue
            if not summary["queue"]:
                continue  # not one of ours: leave it for a person to look at
            headers = {k: v for k, v in (message.headers or {}).items()
                       if k not in ERROR_HEADERS and k != ATTEMPT_HEADER}
            producer.publish(message.body, exchange="",
                             routing_key=summary["queue"], headers=headers,
                             content_type=message.content_type,
                             content_encoding=message.content_encoding,
                             delivery_mode=2)
            message.ack()   # only after the broker confirmed the republish
            replayed.append(summary)
        channel.close()
    return replayed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m shared.deadletters",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["list", "replay", "count"])
    parser.add_argument("service")
    parser.add_argument("event_ids", nargs="*")
    parser.add_argument("--amqp-uri", help="default: the service's config")
    args = parser.parse_args(argv)
    try:
        amqp_uri = args.amqp_uri or load_service_config(args.service)["AMQP_URI"]
    except FileNotFoundError:
        parser.error(f"no service called {args.service!r}")
    if args.action == "count":
        print(count(amqp_uri, args.service))
    elif args.action == "list":
        print(json.dumps(list_dead_letters(amqp_uri, args.service), indent=2))
    else:
        done = replay(amqp_uri, args.service, args.event_ids)
        print(json.dumps({"replayed": len(done), "events": done}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
