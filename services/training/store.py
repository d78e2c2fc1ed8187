"""The training service's own database: volunteers (each one document with
its history, completions, DBS checks and supervisions), courses and site
policies, all scoped by site."""
from shared.storage import SiteScopedRepository

VOLUNTEERS, COURSES, POLICIES = "volunteers", "courses", "site_policies"
COHORTS = "cohorts"

# Written whole by the domain; the store bumps ``version`` on each write.
_FIXED = ("_id", "site_id", "version")


def ensure_indexes(database):
    database[VOLUNTEERS].create_index([("site_id", 1), ("stage", 1)])
    database[COURSES].create_index([("site_id", 1), ("created_at", 1)])
    database[POLICIES].create_index("site_id", unique=True)
    database[COHORTS].create_index([("site_id", 1), ("course_id", 1), ("start_date", 1)])


def sites_with_volunteers(database):
    """Every site that has a volunteer: what the daily check walks through."""
    rows = database[VOLUNTEERS].aggregate([{"$group": {"_id": "$site_id"}}])
    return sorted(row["_id"] for row in rows if row["_id"])


class Volunteers(SiteScopedRepository):
    collection_name = VOLUNTEERS

    def add(self, record, events):
        return self.insert(record, events)

    def get(self, volunteer_id):
        return self.find_one({"_id": volunteer_id})

    def save(self, record, events):
        """Write a changed record if nobody changed it since it was read
        (its ``version``); None if somebody did."""
        fields = {k: v for k, v in record.items() if k not in _FIXED}
        return self.update({"_id": record["_id"], "version": record["version"]},
                           {"$set": fields, "$inc": {"version": 1}}, events)

    def listing(self, stage=None, limit=0):
        query = {"stage": stage} if stage else {}
        return self.find(query, sort=[("registered_at", 1)], limit=limit)

    def current(self, stages):
        return self.find({"stage": {"$in": list(stages)}})


class Courses(SiteScopedRepository):
    collection_name = COURSES

    def add(self, course):
        return self.insert(course)

    def get(self, course_id):
        return self.find_one({"_id": course_id})

    def listing(self):
        return self.find(sort=[("created_at", 1)])


class Policies(SiteScopedRepository):
    collection_name = POLICIES

    def get(self):
        return self.find_one({})

    def put(self, policy, now):
        return self.update({}, {"$set": dict(policy, updated_at=now)}, upsert=True)


class Cohorts(SiteScopedRepository):
    collection_name = COHORTS

    def add(self, cohort):
        return self.insert(cohort)

    def get(self, cohort_id):
        return self.find_one({"_id": cohort_id})

    def of_course(self, course_id):
        return self.find({"course_id": course_id}, sort=[("start_date", 1)])

    def save(self, cohort):
        """Write a changed cohort if nobody changed it since it was read; None if
        somebody did."""
        fields = {k: v for k, v in cohort.items() if k not in _FIXED}
        return self.update({"_id": cohort["_id"], "version": cohort["version"]},
                           {"$set": fields, "$inc": {"version": 1}})

    def mark_completed(self, cohort_id, volunteer_id, completed_on):
        return self.update({"_id": cohort_id},
                           {"$set": {f"completed.{volunteer_id}": completed_on}})
