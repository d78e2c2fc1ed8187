"""Volunteers' training records and eligibility, forwarded to `training`."""


class TrainingEndpoints:
    pass
