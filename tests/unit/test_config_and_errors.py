"""Config substitution and typed errors, with no broker."""
from nameko.exceptions import deserialize, serialize

from shared.config import load_config, load_service_config
from shared.errors import (AlongsideError, Conflict, NotFound, ValidationFailed,
                           problem_for)


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("AMQP_URI: ${AMQP_URI:amqp://localhost}\n"
                    "N: ${N:3}\nLIST: ${L:[1, 2]}\n")
    assert load_config(path) == {"AMQP_URI": "amqp://localhost", "N": 3,
                                 "LIST": [1, 2]}
    monkeypatch.setenv("AMQP_URI", "amqp://rabbit:5672/")
    monkeypatch.setenv("N", "7")
    assert load_config(path)["AMQP_URI"] == "amqp://rabbit:5672/"
    assert load_config(path)["N"] == 7


def test_every_service_config_reads_its_place_from_the_environment(monkeypatch):
    monkeypatch.setenv("MONGODB_URI", "mongodb://mongo:27017/?replicaSet=rs0")
    for service in ("referrals", "reporting"):
        config = load_service_config(service)
        assert config["MONGODB_URI"] == "mongodb://mongo:27017/?replicaSet=rs0"
        assert config["MONGODB_DATABASE"] == f"alongside_{service}"


def test_typed_errors_survive_the_rpc_boundary_with_their_fields():
    error = ValidationFailed("The request has invalid fields.",
                             {"postcode": ["Must be a UK postcode."]})
    again = deserialize(serialize(error))
    assert isinstance(again, ValidationFailed)
    assert again.errors == {"postcode": ["Must be a UK postcode."]}
    assert isinstance(deserialize(serialize(NotFound("No referral x."))), NotFound)


def test_problem_json_shapes():
    status, problem = problem_for(ValidationFailed("Bad.", {"a": ["b"]}), "/x")
    assert status == 422
    assert problem == {"type": "urn:alongside:problem:validation_failed",
                       "title": "Validation failed", "status": 422,
                       "detail": "Bad.", "errors": {"a": ["b"]}, "instance": "/x"}
    assert problem_for(Conflict("Stale version."))[0] == 409
    status, problem = problem_for(KeyError("secret internals"))
    assert status == 500 and "secret" not in str(problem)
    assert isinstance(Conflict("x"), AlongsideError)
