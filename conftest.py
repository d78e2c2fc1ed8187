"""Fixtures every test suite shares: the real datastore and broker.

- ``mongo_uri``: a secantusdb MongoDB wire-protocol server started for the
  test session on a free loopback port, data in a temp folder.
- ``rabbit_config`` (nameko's fixture): a fresh RabbitMQ vhost per test on
  the real broker at 127.0.0.1:5672, removed afterwards.
- ``service_config``: a service's own config.yaml, pointed at those, with a
  database of its own and short retry delays.
"""
import eventlet

eventlet.monkey_patch()  # first, before anything imports socket or threading

import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from shared.config import load_service_config  # noqa: E402

INTEGRATION_FOLDERS = ("integration", "faults")


def pytest_collection_modifyitems(items):
    # Everything under tests/integration and tests/faults talks to real parts.
    for item in items:
        parts = str(item.fspath).split(os.sep)
        if any(folder in parts for folder in INTEGRATION_FOLDERS):
            item.add_marker(pytest.mark.integration)
        if "faults" in parts:
            item.add_marker(pytest.mark.slow)


def _die_with_parent():
    """A test server ends with the test run, even one killed by a timeout
    (Linux: PR_SET_PDEATHSIG), instead of lingering and eating CPU."""
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    port = free_port()
    storage = tmp_path_factory.mktemp("mongo")
    log = open(storage / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "secantus", "--host", "127.0.0.1",
         "--port", str(port), "--storage-path", str(storage / "data"),
         "--sync-on-commit"], stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent)
    uri = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
    deadline = time.monotonic() + 30
    while True:
        try:
            MongoClient(uri, serverSelectionTimeoutMS=300).admin.command("ping")
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"secantusdb did not start: see {storage}/server.log")
            time.sleep(0.2)
    yield uri
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def mongo_client(mongo_uri):
    client = MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def database(mongo_client):
    """A database of the test's own, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield mongo_client[name]
    mongo_client.drop_database(name)


@pytest.fixture
def service_config(rabbit_config, mongo_uri, mongo_client):
    """``service_config("referrals")``: its config.yaml on the test's vhost
    and a database of its own (dropped afterwards)."""
    created = []

    def make(service_name, **overrides):
        database_name = f"test_{uuid.uuid4().hex[:8]}_{service_name}"
        created.append(database_name)
        config = load_service_config(
            service_name,
            AMQP_URI=rabbit_config["AMQP_URI"],
            MONGODB_URI=mongo_uri,
            MONGODB_DATABASE=database_name,
            WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}",
            EVENTS={"MAX_ATTEMPTS": 3, "RETRY_DELAYS_MS": [50, 100]},
            OUTBOX={"POLL_INTERVAL_SECONDS": 0.2},
        )
        config.pop("LOGGING", None)
        config.update(overrides)
        return config

    yield make
    for name in created:
        mongo_client.drop_database(name)
