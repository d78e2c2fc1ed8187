"""Reporting rules, pure: how each event changes the projections."""


def archive_record(envelope, data, archived_at):
    """The append-only archive keeps every event whole, keyed by its id."""
    return {
        "_id": envelope["id"],
        "site_id": envelope["siteid"],
        "type": envelope["type"],
        "time": envelope["time"],
        "subject": envelope["subject"],
        "correlationid": envelope["correlationid"],
        "causationid": envelope["causationid"],
        "data": envelope["data"],
        "archived_at": archived_at,
    }

