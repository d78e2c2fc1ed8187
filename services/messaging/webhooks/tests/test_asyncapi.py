"""The AsyncAPI document (shared/events/asyncapi.py) against the official
AsyncAPI 2.6.0 JSON Schema: ``asyncapi-2.6.0.schema.json`` beside this file
is ``schemas/2.6.0.json`` of the npm package @asyncapi/specs 6.11.1
(Apache-2.0), minified."""
import json
import os

import jsonschema
import pytest

from shared.events import CATALOGUE
from shared.events.asyncapi import build_asyncapi, integration_routing_key

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def validator():
    with open(os.path.join(HERE, "asyncapi-2.6.0.schema.json")) as schema_file:
        return jsonschema.Draft7Validator(json.load(schema_file))


def test_the_document_is_valid_asyncapi_2_6(validator):
    document = json.loads(json.dumps(build_asyncapi()))   # as served: plain JSON
    assert [e.message for e in validator.iter_errors(document)] == []
    assert set(document["components"]["messages"]) == set(CATALOGUE)


def test_the_official_schema_catches_a_broken_document(validator):
    document = json.loads(json.dumps(build_asyncapi()))
    del document["info"]["title"]
    document["channels"]["referral.received"]["subscribe"]["message"] = {
        "payload": {"type": 5}}
    assert len(list(validator.iter_errors(document))) == 2


def test_integration_routing_keys_are_one_word_per_site():
    assert integration_routing_key("b4c1-77", "referral.received") == \
        "b4c1-77.referral.received"
    for bad in ("", "a.b", "a*", "#"):
        with pytest.raises(ValueError):
            integration_routing_key(bad, "referral.received")
