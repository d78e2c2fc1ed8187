"""The inbox: a handler applies each event at most once.

``apply_once(envelope, apply)`` records ``<handler>:<event id>`` in the
``inbox`` collection (its ``_id``, so unique) in the same transaction as
the handler's own writes: a redelivered event finds its record and changes
nothing, and a handler that fails leaves no record, so its retry applies it.

On a server without transactions (a standalone mongod) the effect is
written first and the record second: a crash between the two would apply
that one event again. Production runs a replica set; the local wire
server presents one.

Handlers run concurrently, so two transactions may write the same document
and one must start again. pymongo's ``with_transaction`` retries at once,
which under contention becomes a storm of aborted work; here a retry waits
a random, growing delay first (full jitter).
"""
import logging
import random
import time
from datetime import datetime, timezone

import eventlet
from nameko.extensions import DependencyProvider
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.observability import log_fields
from shared.storage import database_provider

log = logging.getLogger(__name__)

INBOX_COLLECTION = "inbox"


class _AlreadyApplied(Exception):
    pass


class InboxHandle:
    def __init__(self, provider, handler):
        self.provider = provider
        self.handler = handler

    def apply_once(self, envelope, apply):
        """Run ``apply(session)`` unless this handler already applied the
        event; returns True if it ran. Pass ``session`` to every write."""
        database = self.provider.database
        record = {"_id": f"{self.handler}:{envelope['id']}",
                  "handler": self.handler, "event_id": envelope["id"],
                  "type": envelope["type"], "siteid": envelope["siteid"],
                  "applied_at": datetime.now(timezone.utc)}

        def in_transaction(session):
            try:
                database[INBOX_COLLECTION].insert_one(record, session=session)
            except DuplicateKeyError:
                raise _AlreadyApplied()
            apply(session)

        try:
            if self.provider.transactions:
                run_in_transaction(database.client, in_transaction)
            else:
                if database[INBOX_COLLECTION].find_one({"_id": record["_id"]}):
                    raise _AlreadyApplied()
                apply(None)
                try:
                    database[INBOX_COLLECTION].insert_one(record)
                except DuplicateKeyError:
                    pass
        except _AlreadyApplied:
            log.info("event already applied; ignoring redelivery",
                     extra=log_fields(event_id=envelope["id"], handler=self.handler))
            return False
        return True


TRANSIENT = "TransientTransactionError"
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"


def run_in_transaction(client, callback, give_up_after=60.0,
                       first_delay=0.005, max_delay=0.5):
    """Run ``callback(session)`` in a transaction, retrying transient
    failures (write conflicts) after a jittered, growing delay."""
    deadline = time.monotonic() + give_up_after
    delay = first_delay
    while True:
        with client.start_session() as session:
            session.start_transaction()
            try:
                callback(session)
                _commit(session, deadline)
                return
            except PyMongoError as error:
                if session.in_transaction:
                    session.abort_transaction()
                if not error.has_error_label(TRANSIENT) or time.monotonic() > deadline:
                    raise
            except BaseException:
                if session.in_transaction:
                    session.abort_transaction()
                raise
        eventlet.sleep(random.uniform(0, delay))
        delay = min(delay * 2, max_delay)


def _commit(session, deadline):
    while True:
        try:
            session.commit_transaction()
            return
        except PyMongoError as error:
            if not error.has_error_label(UNKNOWN_COMMIT) or time.monotonic() > deadline:
                raise


class Inbox(DependencyProvider):
    def setup(self):
        self.database_dependency = database_provider(self.container)

    @property
    def database(self):
        return self.database_dependency.database

    @property
    def transactions(self):
        return self.database_dependency.transactions

    def start(self):
        self.database_dependency.wait_until_prepared()
        self.database[INBOX_COLLECTION].create_index("event_id")

    def get_dependency(self, worker_ctx):
        handler = f"{self.container.service_name}.{worker_ctx.entrypoint.method_name}"
        return InboxHandle(self, handler)
