"""Journeys: contacts, goals and outcome measures, forwarded to the journeys service."""


class JourneyEndpoints:
    pass
