"""JSON logs carry the correlation id of the work in hand."""
import json
import logging

from shared.observability import JsonFormatter, log_fields, set_correlation_id


def record(message, **extra):
    logger = logging.getLogger("alongside.test")
    return logger.makeRecord("alongside.test", logging.INFO, __file__, 1,
                             message, (), None, extra=extra or None)


def test_each_line_is_json_with_the_correlation_id():
    set_correlation_id("corr-7")
    try:
        line = JsonFormatter().format(record("referral %s", **log_fields(site_id="essex")))
    finally:
        set_correlation_id(None)
    entry = json.loads(line)
    assert entry["correlation_id"] == "corr-7"
    assert entry["level"] == "INFO" and entry["site_id"] == "essex"
    assert entry["time"].endswith("Z")


def test_no_correlation_id_outside_a_worker():
    entry = json.loads(JsonFormatter().format(record("starting")))
    assert "correlation_id" not in entry and entry["message"] == "starting"
