"""The inbox: a handler applies each event at most once.

``apply_once(envelope, apply)`` records ``<handler>:<event id>`` in the
``inbox`` collection (its ``_id``, so unique) in the same transaction as
the handler's own writes: a redelivered event finds its record and changes
nothing, and a handler that fails leaves no record, so its retry applies it.

On a server without transactions (a standalone mongod) the effect is
written first and the record second: a crash between the two would apply
that one event again. Production runs a replica set; the local wire
server presents one.
"""
import logging
from datetime import datetime, timezone

from nameko.extensions import DependencyProvider
from pymongo.errors import DuplicateKeyError

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
                with database.client.start_session() as session:
                    session.with_transaction(in_transaction)
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
        self.database[INBOX_COLLECTION].create_index("event_id")

    def get_dependency(self, worker_ctx):
        handler = f"{self.container.service_name}.{worker_ctx.entrypoint.method_name}"
        return InboxHandle(self, handler)
