"""The messaging service's own database, scoped by site.

- ``templates``: a site's own templates (``_id`` = site:kind:audience:language);
  without one the code's English default is used.
- ``preferences``: a person's preferred channel and opt-outs
  (``_id`` = site:recipient kind:person id).
- ``messages``: the delivery log and queue in one: each message's status,
  attempts, times and error, its content and address encrypted until it
  leaves (then dropped), and the ``message.sent``/``failed`` events in its
  outbox. ``due_at`` is when a pending message may go next (for one being
  sent: when its claim lapses, so a crashed sender's message goes again).
- ``reminders``: contact reminders and the messages scheduled for them.
- ``settings``: a site's quiet hours (``_id`` = the site).
"""
from datetime import timedelta

from pymongo import ReturnDocument

from services.messaging import domain
from shared.storage import SiteScopedRepository

TEMPLATES = "templates"
PREFERENCES = "preferences"
MESSAGES = "messages"
REMINDERS = "reminders"
SETTINGS = "settings"


def ensure_indexes(database):
    database[MESSAGES].create_index([("status", 1), ("due_at", 1)])
    database[MESSAGES].create_index([("site_id", 1), ("created_at", -1)])
    database[MESSAGES].create_index([("site_id", 1), ("reminder_id", 1)])
    database[TEMPLATES].create_index([("site_id", 1), ("kind", 1)])
    database[REMINDERS].create_index([("site_id", 1), ("contact_at", 1)])


def claim_due(database, now, lease_seconds):
    """Take one message that is due (of any site) for sending: one atomic
    update, so two senders never take the same message."""
    return database[MESSAGES].find_one_and_update(
        {"status": {"$in": list(domain.PENDING) + [domain.SENDING]},
         "due_at": {"$lte": now}},
        {"$set": {"status": domain.SENDING,
                  "due_at": now + timedelta(seconds=lease_seconds)}},
        projection={"_outbox": 0}, return_document=ReturnDocument.AFTER)


class Templates(SiteScopedRepository):
    collection_name = TEMPLATES

    def _id(self, kind, audience, language):
        return f"{self.site_id}:{kind}:{audience}:{language}"

    def get(self, kind, audience, language):
        return self.find_one({"_id": self._id(kind, audience, language)})

    def put(self, kind, audience, language, parts, when, by):
        return self.update({"_id": self._id(kind, audience, language)},
                           {"$set": dict(parts, kind=kind, audience=audience,
                                         language=language, updated_at=when,
                                         updated_by=by)}, upsert=True)

    def delete(self, kind, audience, language):
        result = self.collection.delete_one(
            self.scoped({"_id": self._id(kind, audience, language)}), session=self.session)
        return result.deleted_count == 1

    def listing(self):
        return self.find(sort=[("_id", 1)])


class Preferences(SiteScopedRepository):
    collection_name = PREFERENCES

    def _id(self, recipient_kind, person_id):
        return f"{self.site_id}:{recipient_kind}:{person_id}"

    def get(self, recipient_kind, person_id):
        return self.find_one({"_id": self._id(recipient_kind, person_id)})

    def put(self, recipient_kind, person_id, preferences, when):
        return self.update({"_id": self._id(recipient_kind, person_id)},
                           {"$set": dict(preferences, recipient_kind=recipient_kind,
                                         person_id=person_id, updated_at=when)},
                           upsert=True)


class Messages(SiteScopedRepository):
    collection_name = MESSAGES

    def add(self, message):
        return self.insert(message)

    def get(self, message_id):
        return self.find_one({"_id": message_id})

    def search(self, query):
        filter = {name: query[name] for name in
                  ("status", "kind", "channel", "recipient_kind")
                  if query.get(name) is not None}
        return self.find(filter, sort=[("created_at", -1)], limit=query["limit"])

    def settle(self, message_id, changes, events=()):
        """Record the outcome of a claimed message (and its events), only
        while it is still claimed; None if it is not."""
        return self.update({"_id": message_id, "status": domain.SENDING},
                           {"$set": changes}, events)

    def cancel_for_reminder(self, reminder_id, when):
        result = self.collection.update_many(
            self.scoped({"reminder_id": reminder_id,
                         "status": {"$in": list(domain.PENDING)}}),
            {"$set": {"status": domain.CANCELLED, "due_at": None, "content": None,
                      "cancelled_at": when}}, session=self.session)
        return result.modified_count


class Reminders(SiteScopedRepository):
    collection_name = REMINDERS

    def add(self, reminder):
        return self.insert(reminder)

    def get(self, reminder_id):
        return self.find_one({"_id": reminder_id})

    def cancel(self, reminder_id, when):
        return self.update({"_id": reminder_id, "status": "scheduled"},
                           {"$set": {"status": "cancelled", "cancelled_at": when}})


class Settings(SiteScopedRepository):
    collection_name = SETTINGS

    def get(self):
        return self.find_one({"_id": self.site_id})

    def put(self, settings, when, by):
        return self.update({"_id": self.site_id},
                           {"$set": dict(settings, updated_at=when, updated_by=by)},
                           upsert=True)
