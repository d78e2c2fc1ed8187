"""Each site's pool of volunteers who can take a parent, kept in memory.

A suggestion scores every volunteer of the site with a place left; loading
them all from the datastore on every call costs far more than scoring them
(on the local wire server about 40 us a document, whatever the index). So
the service keeps each site's pool (:class:`services.matching.domain.Pool`)
and checks, on every call, one small document: the site's pool version
(``store.PoolVersions``), raised after every change to a profile that
scoring reads, with the volunteer's id. Same version: the pool is current.
A newer one: only the volunteers changed since are read again (by id). Too
many changes, or a pool older than ``MATCHING.POOL_MAX_AGE_SECONDS``
(default 60, a backstop for a change whose version raise was lost to a
crash): the whole pool is read again.

Every replica of the service keeps its own pools and checks the version
itself, so a change made through one is seen by the others on their next
call. What is decided is checked again when written: a place is taken
only by the conditional update on the profile, never from this copy.
"""
import time

from nameko.extensions import DependencyProvider

from services.matching import domain, store


class SitePool:
    def __init__(self, version, volunteers, loaded_at, pool=None):
        self.version = version
        self.volunteers = volunteers          # {volunteer id: scoring facts}
        self.loaded_at = loaded_at
        self._pool = pool

    @property
    def pool(self):
        if self._pool is None:
            self._pool = domain.Pool(self.volunteers.values())
        return self._pool


def _can_take_one(volunteer):
    return domain.is_matchable(volunteer) and volunteer["active"] < volunteer["capacity"]


class Pools:
    """The cache itself (no nameko): ``pools.get(database, site_id)``."""

    def __init__(self, max_age_seconds=60.0, clock=time.monotonic):
        self.max_age = max_age_seconds
        self.clock = clock
        self.sites = {}
        self.full_loads = 0
        self.partial_loads = 0

    def get(self, database, site_id):
        """The site's pool as it is now (a :class:`domain.Pool`)."""
        state = store.PoolVersions(database, site_id).get()
        version, changed = state.get("version", 0), state.get("changed", [])
        cached = self.sites.get(site_id)
        now = self.clock()
        if cached is not None and now - cached.loaded_at <= self.max_age:
            if cached.version == version:
                return cached.pool
            behind = version - cached.version
            if 0 < behind <= len(changed):
                return self._refresh(database, site_id, cached, version,
                                     set(changed[-behind:])).pool
        return self._load(database, site_id, version, now).pool

    def _load(self, database, site_id, version, now):
        self.full_loads += 1
        volunteers = {v["_id"]: v for v in store.Profiles(database, site_id).candidates()}
        return self._keep(site_id, SitePool(version, volunteers, now))

    def _refresh(self, database, site_id, cached, version, volunteer_ids):
        self.partial_loads += 1
        volunteers = dict(cached.volunteers)
        for volunteer_id in volunteer_ids:
            volunteers.pop(volunteer_id, None)
        fresh = [volunteer for volunteer
                 in store.Profiles(database, site_id).scoring_facts(volunteer_ids)
                 if _can_take_one(volunteer)]
        volunteers.update((volunteer["_id"], volunteer) for volunteer in fresh)
        pool = None
        old = cached._pool
        if old is not None and old.stale < max(50, len(old) // 5):
            # Only the changed rows: the old ones off, the new ones added.
            pool = old.changed(volunteer_ids, fresh)
        return self._keep(site_id, SitePool(version, volunteers, cached.loaded_at, pool))

    def _keep(self, site_id, fresh):
        # Two calls may reload at once: the newer version stays.
        cached = self.sites.get(site_id)
        if cached is None or cached.version <= fresh.version:
            self.sites[site_id] = fresh
        return fresh


class PoolCache(DependencyProvider):
    """The service's :class:`Pools` (one per service process)."""

    def setup(self):
        settings = self.container.config.get("MATCHING", {}) or {}
        self.pools = Pools(float(settings.get("POOL_MAX_AGE_SECONDS", 60)))

    def get_dependency(self, worker_ctx):
        return self.pools
