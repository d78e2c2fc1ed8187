"""The journeys service's own database, scoped by site.

- ``journeys``: one per confirmed match (a unique index on the match), open
  or ended, with the volunteer's user id (who may reach it).
- ``contacts``, ``goals`` (each with its reviews embedded), ``outcomes``:
  each belongs to one journey; each record carries the event it caused in
  the same write (the outbox). A unique partial index keeps one baseline and
  one exit per journey and instrument.
- ``closed_matches``: a match that ended before its ``match.confirmed`` was
  handled (a retried delivery overtaken): no journey opens for it later.
"""
from shared.storage import SiteScopedRepository

JOURNEYS, CONTACTS, GOALS, OUTCOMES, CLOSED_MATCHES = (
    "journeys", "contacts", "goals", "outcomes", "closed_matches")


def ensure_indexes(database):
    database[JOURNEYS].create_index([("site_id", 1), ("match_id", 1)], unique=True,
                                    name="one_journey_per_match")
    database[JOURNEYS].create_index([("site_id", 1), ("volunteer_user_id", 1),
                                     ("started_at", -1)])
    database[JOURNEYS].create_index([("site_id", 1), ("status", 1), ("started_at", -1)])
    database[CONTACTS].create_index([("site_id", 1), ("journey_id", 1), ("date", 1)])
    database[CONTACTS].create_index([("site_id", 1), ("date", 1)])
    database[GOALS].create_index([("site_id", 1), ("journey_id", 1)])
    database[OUTCOMES].create_index([("site_id", 1), ("journey_id", 1)])
    database[OUTCOMES].create_index(
        [("site_id", 1), ("journey_id", 1), ("instrument", 1), ("time_point", 1)],
        unique=True, partialFilterExpression={"once": True},
        name="one_baseline_and_exit_per_instrument")


class Journeys(SiteScopedRepository):
    collection_name = JOURNEYS

    def add(self, journey, events):
        return self.insert(journey, events)

    def get(self, journey_id):
        return self.find_one({"_id": journey_id})

    def by_match(self, match_id):
        return self.find_one({"match_id": match_id})

    def close(self, journey_id, changes, events):
        """End an open journey; None if it is no longer open."""
        return self.update({"_id": journey_id, "status": "open"}, {"$set": changes}, events)

    def volunteers_of_user(self, user_id):
        """The volunteer ids a user's journeys name (a volunteer's own)."""
        return sorted({j["volunteer_id"] for j in self.find({"volunteer_user_id": user_id})})

    def search(self, query, volunteer_user_id=None):
        filter = {name: query[name] for name in ("status", "volunteer_id", "referral_id")
                  if query.get(name) is not None}
        if volunteer_user_id is not None:
            filter["volunteer_user_id"] = volunteer_user_id
        return self.find(filter, sort=[("started_at", -1)], limit=query["limit"])


class ClosedMatches(SiteScopedRepository):
    collection_name = CLOSED_MATCHES

    def remember(self, match_id, reason, when):
        self.update({"_id": match_id}, {"$set": {"reason": reason, "closed_at": when}},
                    upsert=True)

    def has(self, match_id):
        return self.find_one({"_id": match_id}) is not None


class Contacts(SiteScopedRepository):
    collection_name = CONTACTS

    def add(self, contact, events):
        return self.insert(contact, events)

    def of(self, journey_id):
        return self.find({"journey_id": journey_id}, sort=[("date", 1), ("logged_at", 1)])

    def totals(self, journey_ids):
        """{journey id: (contacts, minutes, volunteer minutes)}."""
        rows = self.collection.aggregate([
            {"$match": self.scoped({"journey_id": {"$in": list(journey_ids)}})},
            {"$group": {"_id": "$journey_id", "contacts": {"$sum": 1},
                        "minutes": {"$sum": "$duration_minutes"},
                        "volunteer_minutes": {"$sum": "$volunteer_minutes"}}}],
            session=self.session)
        return {row["_id"]: (row["contacts"], row["minutes"], row["volunteer_minutes"])
                for row in rows}


    def hours(self, date_from=None, date_to=None, volunteer_ids=None):
        """[(volunteer id, contacts, minutes, volunteer minutes)] over a period
        (ISO dates, both ends included), per volunteer."""
        filter = {}
        if date_from or date_to:
            filter["date"] = {}
            if date_from:
                filter["date"]["$gte"] = date_from
            if date_to:
                filter["date"]["$lte"] = date_to
        if volunteer_ids is not None:
            filter["volunteer_id"] = {"$in": list(volunteer_ids)}
        rows = self.collection.aggregate([
            {"$match": self.scoped(filter)},
            {"$group": {"_id": "$volunteer_id", "contacts": {"$sum": 1},
                        "minutes": {"$sum": "$duration_minutes"},
                        "volunteer_minutes": {"$sum": "$volunteer_minutes"}}}],
            session=self.session)
        return [(row["_id"], row["contacts"], row["minutes"], row["volunteer_minutes"])
                for row in rows]


class Goals(SiteScopedRepository):
    collection_name = GOALS

    def add(self, goal, events):
        return self.insert(goal, events)

    def get(self, journey_id, goal_id):
        return self.find_one({"_id": goal_id, "journey_id": journey_id})

    def of(self, journey_id):
        return self.find({"journey_id": journey_id}, sort=[("set_on", 1), ("created_at", 1)])

    def review(self, goal_id, changes, review, events):
        return self.update({"_id": goal_id}, {"$set": changes, "$push": {"reviews": review}},
                           events)


class Outcomes(SiteScopedRepository):
    collection_name = OUTCOMES

    def add(self, outcome, events):
        return self.insert(outcome, events)

    def of(self, journey_id):
        return self.find({"journey_id": journey_id},
                         sort=[("recorded_on", 1), ("recorded_at", 1)])
