"""Matching profiles, suggestions, matches and match plans, forwarded to `matching`."""


class MatchingEndpoints:
    pass
