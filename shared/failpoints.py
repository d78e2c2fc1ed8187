"""Failpoints: named places where a test can make a process die on purpose.

Off unless ``ALONGSIDE_FAILPOINTS`` names them (comma-separated), as
MongoDB's own ``configureFailPoint`` is off unless enabled. A failpoint
that fires ends the process at once, like ``kill -9``: no cleanup, no ack.
"""
import logging
import os

log = logging.getLogger(__name__)


def failpoint(name):
    enabled = os.environ.get("ALONGSIDE_FAILPOINTS", "")
    if name in enabled.split(","):
        log.critical("failpoint %s fired: exiting now", name)
        logging.shutdown()
        os._exit(137)
