"""MongoDB access: one database per service, and the site-scoped repository.

Every record carries ``site_id``. A repository is opened for one site (the
site of the caller's credentials, never of a request body) and adds that
site to every query and write; it refuses to open without one.
"""
import logging

from eventlet.event import Event
from nameko.extensions import DependencyProvider
from pymongo import MongoClient, ReturnDocument

from shared.errors import MissingSiteScope
from shared.outbox import OUTBOX_FIELD, outbox_entries

log = logging.getLogger(__name__)

HIDDEN_FIELDS = {OUTBOX_FIELD: 0}


def read_back_upsert(collection, filter, session=None):
    """The record an upsert wrote. secantusdb answers one of two upserts
    racing to create the same record with no document, though it applied
    the change (tests/integration/test_mongo_subset.py shows it)."""
    if "_id" in filter:
        filter = {key: filter[key] for key in ("_id", "site_id") if key in filter}
    return collection.find_one(filter, HIDDEN_FIELDS, session=session)


def connect(uri):
    # tz_aware: every datetime read back is UTC-aware, as written.
    return MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000,
                       connectTimeoutMS=5000)


def supports_transactions(client):
    hello = client.admin.command("hello")
    return bool(hello.get("setName") or hello.get("msg") == "isdbgrid")


class Database(DependencyProvider):
    """The service's own database (``MONGODB_DATABASE`` at ``MONGODB_URI``).

    ``prepare`` (say ``store.ensure_indexes``) runs once at start. Other
    providers that touch the database while starting call
    :meth:`wait_until_prepared` first: nameko starts providers side by side,
    and an index built while another writes the same collection has been
    seen to hang the local wire server.
    """

    def __init__(self, prepare=None, **kwargs):
        self.prepare = prepare
        super().__init__(**kwargs)

    def setup(self):
        config = self.container.config
        self.client = connect(config["MONGODB_URI"])
        self.database = self.client[config["MONGODB_DATABASE"]]
        self._transactions = None
        self._prepared = Event()

    @property
    def transactions(self):
        if self._transactions is None:
            self._transactions = supports_transactions(self.client)
        return self._transactions

    def start(self):
        if self.prepare:
            self.prepare(self.database)
        self._prepared.send(True)

    def wait_until_prepared(self):
        self._prepared.wait()

    def stop(self):
        self.client.close()

    def kill(self):
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.database

    def health_check(self):
        self.client.admin.command("ping")
        return "ok"


def database_provider(container):
    """The container's :class:`Database`: outbox and inbox share its client."""
    for extension in container.dependencies:
        if isinstance(extension, Database):
            return extension
    raise RuntimeError(f"{container.service_name} has no Database dependency")


class SiteScopedRepository:
    """Base of every store: each query and write is scoped to one site.

    Subclasses name their ``collection_name`` and add meaningful methods
    built on the scoped primitives here.
    """
    collection_name = None

    def __init__(self, database, site_id, session=None):
        if not isinstance(site_id, str) or not site_id.strip():
            raise MissingSiteScope(
                f"{type(self).__name__} needs the caller's site to open.")
        self.site_id = site_id
        self.collection = database[self.collection_name]
        self.session = session

    def scoped(self, filter=None):
        scoped = dict(filter or {})
        if scoped.get("site_id", self.site_id) != self.site_id:
            raise MissingSiteScope("A query may not name another site.")
        scoped["site_id"] = self.site_id
        return scoped

    def find_one(self, filter):
        return self.collection.find_one(self.scoped(filter), HIDDEN_FIELDS,
                                        session=self.session)

    def find(self, filter=None, sort=None, limit=0):
        cursor = self.collection.find(self.scoped(filter), HIDDEN_FIELDS,
                                      session=self.session, limit=limit)
        if sort:
            cursor = cursor.sort(sort)
        return list(cursor)

    def count(self, filter=None):
        return self.collection.count_documents(self.scoped(filter),
                                               session=self.session)

    def insert(self, document, events=()):
        """Insert a record and the events it causes in one atomic write."""
        if document.get("site_id", self.site_id) != self.site_id:
            raise MissingSiteScope("A record may not be written to another site.")
        self._check_events(events)
        document = dict(document, site_id=self.site_id)
        if events:
            document[OUTBOX_FIELD] = outbox_entries(events)
        self.collection.insert_one(document, session=self.session)
        document.pop(OUTBOX_FIELD, None)
        return document

    def update(self, filter, update, events=(), upsert=False):
        """Change one record and queue its events in the same atomic write.

        Returns the record as it is after the change, or None if none matched.
        """
        for operator in update.values():
            if isinstance(operator, dict) and "site_id" in operator:
                raise MissingSiteScope("A record's site cannot be changed.")
        self._check_events(events)
        update = dict(update)
        if events:
            update["$push"] = dict(update.get("$push", {}), **{
                OUTBOX_FIELD: {"$each": outbox_entries(events)}})
        document = self.collection.find_one_and_update(
            self.scoped(filter), update, projection=HIDDEN_FIELDS,
            return_document=ReturnDocument.AFTER, upsert=upsert,
            session=self.session)
        if document is None and upsert:
            document = read_back_upsert(self.collection, self.scoped(filter),
                                        self.session)
        return document

    def set_fields(self, filter, fields, upsert=False):
        """``$set`` on one record without reading it back (a find-and-modify
        costs several times more); for records that raise no events."""
        if "site_id" in fields:
            raise MissingSiteScope("A record's site cannot be changed.")
        self.collection.update_one(self.scoped(filter), {"$set": fields}, upsert=upsert,
                                   session=self.session)

    def _check_events(self, events):
        for event in events:
            if event["siteid"] != self.site_id:
                raise MissingSiteScope("An event may not be raised for another site.")
