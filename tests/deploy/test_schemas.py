"""The deployment files against the schemas of the tools that read them.

- docker-compose.yml against the Compose Specification's JSON schema
  (vendored in tests/deploy/schemas/, see its README.md), with jsonschema.
- Every Kubernetes object under k8s/ (as written in base/, and as the
  overlays render with `kubectl kustomize` where kubectl is installed)
  against the Kubernetes OpenAPI schemas of KUBERNETES_VERSION, bundled by
  the PyPI package kubernetes-validate, strictly (no unknown fields).
- The custom resources (RabbitmqCluster of the RabbitMQ Cluster Operator,
  Policy of the Messaging Topology Operator) have no schema there and none
  is vendored: the fields used here were checked by hand against the
  operators' CRDs (rabbitmq/cluster-operator
  config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml, and
  rabbitmq/messaging-topology-operator
  config/crd/bases/rabbitmq.com_policies.yaml) and are pinned below as small
  schemas of our own: a field we start using must be added there, after
  checking it in the CRD.
- What the manifests mean: the NetworkPolicies evaluated for who may reach
  whom, the broker policies against the queue names the services declare.
"""
import copy
import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.test_manifests import (OVERLAYS, SERVICES, k8s_documents,
                                         kustomization, load_yaml)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSION = "1.30.0"
CUSTOM_KINDS = {("rabbitmq.com/v1beta1", "RabbitmqCluster"),
                ("rabbitmq.com/v1beta1", "Policy")}

try:
    import kubernetes_validate
except ImportError:         # requirements-dev.txt has it; the compose checks run anyway
    kubernetes_validate = None
needs_kubernetes_schemas = pytest.mark.skipif(
    kubernetes_validate is None,
    reason="kubernetes-validate is not installed (pip install -r requirements-dev.txt)")


# --- compose ------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_validator():
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_compose_file_follows_the_compose_specification(compose_validator):
    document = load_yaml("docker-compose.yml")
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in compose_validator.iter_errors(document)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("breakage", ["unknown key", "bad depends_on", "bad port"])
def test_the_compose_schema_catches_mistakes(compose_validator, breakage):
    """The schema is strict enough to matter: a misspelt key, a wrong
    depends_on condition or a port of the wrong type is refused."""
    document = copy.deepcopy(load_yaml("docker-compose.yml"))
    service = document["services"]["referrals"]
    if breakage == "unknown key":
        service["enviroment"] = {"A": "b"}
    elif breakage == "bad depends_on":
        service["depends_on"]["rabbitmq"]["condition"] = "service_ready"
    else:
        service["ports"] = [{"target": 8080, "published": {"port": 1}}]
    assert list(compose_validator.iter_errors(document))


# --- Kubernetes -----------------------------------------------------------------

def validate_kubernetes(document):
    """Errors of one object against the Kubernetes schemas ([] if valid);
    custom resources go to check_custom_resource."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in CUSTOM_KINDS:
        return check_custom_resource(document)
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{key}: no Kubernetes schema and no hand-checked one"]
    except kubernetes_validate.ValidationError as error:
        return [f"{key} {document['metadata'].get('name')}: "
                f"{'.'.join(map(str, error.path))}: {error.message}"]
    return []


def patch_files():
    """Overlay files that are patches (partial objects), not resources."""
    found = set()
    for overlay in OVERLAYS:
        for patch in kustomization(f"overlays/{overlay}").get("patches") or []:
            if "path" in patch:
                found.add(Path("k8s/overlays") / overlay / patch["path"])
    return found


@needs_kubernetes_schemas
def test_every_k8s_object_follows_its_schema():
    patches = patch_files()
    checked = 0
    errors = []
    for path, document in k8s_documents():
        if document["kind"] == "Kustomization" or path in patches:
            continue
        errors += [f"{path}: {e}" for e in validate_kubernetes(document)]
        checked += 1
    assert checked >= 20
    assert not errors, "\n".join(errors)


@needs_kubernetes_schemas
@pytest.mark.parametrize("breakage", ["unknown field", "wrong type", "missing"])
def test_the_kubernetes_schemas_catch_mistakes(breakage):
    deployment = copy.deepcopy(next(
        d for p, d in k8s_documents()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "referrals"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    if breakage == "unknown field":
        container["readinesProbe"] = container.pop("readinessProbe")
    elif breakage == "wrong type":
        container["ports"][0]["containerPort"] = "eighty"
    else:
        del container["name"]
    assert validate_kubernetes(deployment)


def kustomize_command():
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    command = kustomize_command()
    if command is None:
        pytest.skip("no kubectl or kustomize: the overlays are not rendered"
                    " (base/ is still validated file by file)")
    result = subprocess.run([*command, str(ROOT / "k8s/overlays" / request.param)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return request.param, [d for d in yaml.safe_load_all(result.stdout) if d]


@needs_kubernetes_schemas
def test_rendered_overlay_follows_the_schemas(rendered):
    overlay, documents = rendered
    errors = [e for d in documents for e in validate_kubernetes(d)]
    assert not errors, f"{overlay}:\n" + "\n".join(errors)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
            "NetworkPolicy", "RabbitmqCluster", "Policy", "StatefulSet",
            "Job"} <= kinds


def test_production_has_an_autoscaler_per_service_and_dev_none(rendered):
    overlay, documents = rendered
    autoscaled = {d["spec"]["scaleTargetRef"]["name"] for d in documents
                  if d["kind"] == "HorizontalPodAutoscaler"}
    assert autoscaled == (set(SERVICES) if overlay == "production" else set())


def test_dev_runs_the_infrastructure_small(rendered):
    overlay, documents = rendered
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    broker = by_kind[("RabbitmqCluster", "rabbitmq")]["spec"]["replicas"]
    mongo = by_kind[("StatefulSet", "mongo")]["spec"]["replicas"]
    job = by_kind[("Job", "mongo-init")]["spec"]["template"]["spec"]["containers"][0]
    members = {e["name"]: e.get("value") for e in job["env"]}["MONGO_MEMBERS"]
    expected = 1 if overlay == "dev" else 3
    assert (broker, mongo, int(members)) == (expected, expected, expected)


# --- custom resources, checked by hand -------------------------------------------

QUANTITY = {"anyOf": [{"type": "string", "pattern": r"^[0-9.]+(m|Ki|Mi|Gi|Ti)?$"},
                      {"type": "integer"}]}
RESOURCES = {"type": "object", "additionalProperties": False, "properties": {
    "requests": {"type": "object", "additionalProperties": QUANTITY},
    "limits": {"type": "object", "additionalProperties": QUANTITY}}}
METADATA = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}}}

# The fields of RabbitmqCluster (rabbitmq.com/v1beta1) used here, as in the
# cluster operator's CRD: spec.replicas (integer), image, service.type
# (ClusterIP|LoadBalancer|NodePort), persistence.storage (Quantity),
# persistence.storageClassName, resources, rabbitmq.additionalPlugins (names
# matching ^\w+$), rabbitmq.additionalConfig (string), override.statefulSet
# (a StatefulSet subset; its pod spec lists containers, which the CRD
# requires, hence `containers: []`).
RABBITMQ_CLUSTER = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "rabbitmq.com/v1beta1"},
        "kind": {"const": "RabbitmqCluster"},
        "metadata": METADATA,
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "image": {"type": "string"},
            "service": {"type": "object", "additionalProperties": False,
                        "properties": {"type": {"enum": ["ClusterIP",
                                                         "LoadBalancer",
                                                         "NodePort"]}}},
            "persistence": {"type": "object", "additionalProperties": False,
                            "properties": {"storage": QUANTITY,
                                           "storageClassName": {"type": "string"}}},
            "resources": RESOURCES,
            "rabbitmq": {"type": "object", "additionalProperties": False,
                         "properties": {
                             "additionalPlugins": {
                                 "type": "array", "maxItems": 100,
                                 "items": {"type": "string", "pattern": r"^\w+$"}},
                             "additionalConfig": {"type": "string"}}},
            "override": {"type": "object", "additionalProperties": False,
                         "properties": {"statefulSet": {"type": "object", "properties": {
                             "spec": {"type": "object", "properties": {
                                 "template": {"type": "object", "properties": {
                                     "spec": {"type": "object",
                                              "required": ["containers"],
                                              "properties": {"containers": {
                                                  "type": "array"}}}}}}}}}}},
        }},
    },
}

# Policy (rabbitmq.com/v1beta1) of the messaging topology operator's CRD.
POLICY = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "rabbitmq.com/v1beta1"},
        "kind": {"const": "Policy"},
        "metadata": METADATA,
        "spec": {"type": "object", "additionalProperties": False,
                 "required": ["name", "pattern", "definition",
                              "rabbitmqClusterReference"],
                 "properties": {
                     "name": {"type": "string"},
                     "vhost": {"type": "string"},
                     "pattern": {"type": "string"},
                     "applyTo": {"enum": ["queues", "classic_queues",
                                          "quorum_queues", "exchanges", "all"]},
                     "priority": {"type": "integer"},
                     "definition": {"type": "object"},
                     "rabbitmqClusterReference": {
                         "type": "object", "additionalProperties": False,
                         "properties": {"name": {"type": "string"},
                                        "namespace": {"type": "string"}}}}},
    },
}


def check_custom_resource(document):
    schema = RABBITMQ_CLUSTER if document["kind"] == "RabbitmqCluster" else POLICY
    # Of metadata only the name is checked (labels and namespace are
    # Kubernetes' own ObjectMeta, the same for every kind).
    document = {**document, "metadata": {"name": document["metadata"]["name"]}}
    return [f"{document['kind']}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(document)]


def base_custom(kind):
    return [d for p, d in k8s_documents()
            if p.parts[:2] == ("k8s", "base") and d["kind"] == kind]


def test_rabbitmq_cluster_uses_quorum_queues_and_exports_metrics():
    (cluster,) = base_custom("RabbitmqCluster")
    spec = cluster["spec"]
    assert spec["replicas"] >= 3, "quorum queues want three nodes in production"
    config = dict(line.split("=", 1) for line in
                  (raw.strip() for raw in spec["rabbitmq"]["additionalConfig"].splitlines())
                  if line and not line.startswith("#"))
    config = {k.strip(): v.strip() for k, v in config.items()}
    assert config["default_queue_type"] == "quorum"
    assert "rabbitmq_prometheus" in spec["rabbitmq"]["additionalPlugins"]
    version = re.search(r":(\d+)\.(\d+)", spec["image"])
    assert version and (int(version[1]), int(version[2])) >= (3, 13), \
        "default_queue_type in rabbitmq.conf needs RabbitMQ 3.13 or later"


def test_the_custom_resource_checks_catch_mistakes():
    (cluster,) = base_custom("RabbitmqCluster")
    broken = copy.deepcopy(cluster)
    broken["spec"]["rabbitmq"]["additionalConfg"] = "x"
    assert check_custom_resource(broken)
    policy = copy.deepcopy(base_custom("Policy")[0])
    policy["spec"]["applyTo"] = "streams"
    assert check_custom_resource(policy)


# --- broker policies ----------------------------------------------------------

def definitions_policies():
    definitions = json.loads((ROOT / "infra/rabbitmq/definitions.json").read_text())
    return {p["name"]: p for p in definitions["policies"]}


def test_k8s_policies_are_the_definitions_policies():
    """compose (definitions.json) and Kubernetes (Policy resources) apply
    the same broker policies."""
    in_k8s = {}
    for policy in base_custom("Policy"):
        spec = policy["spec"]
        assert spec["rabbitmqClusterReference"] == {"name": "rabbitmq"}
        in_k8s[spec["name"]] = {"name": spec["name"], "vhost": spec["vhost"],
                                "pattern": spec["pattern"],
                                "apply-to": spec["applyTo"],
                                "priority": spec["priority"],
                                "definition": spec["definition"]}
    assert in_k8s == definitions_policies()


def applied_policy(queue_name, policies, queue_type="classic"):
    """The policy RabbitMQ applies to a queue: the matching one of highest
    priority among those for its type (patterns are regular expressions
    over the name)."""
    targets = {"queues", "all", f"{queue_type}_queues"}
    matching = [p for p in policies.values()
                if p["apply-to"] in targets and re.search(p["pattern"], queue_name)]
    return max(matching, key=lambda p: p["priority"], default=None)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_service_event_queues_dead_letter_to_its_own_queue(service, queue_type):
    """A message a consumer rejects (classic queues: compose) or that is
    redelivered past the delivery limit (quorum queues: Kubernetes, where a
    consumer keeps crashing on it) ends in the service's own dead-letter
    queue, where `python -m shared.deadletters` lists it, not dropped."""
    policies = definitions_policies()
    from shared.messaging import handler_queue_name
    queue = handler_queue_name("referrals", "referral.received", service, "on_received")
    policy = applied_policy(queue, policies, queue_type)
    assert policy, f"no policy applies to {queue}"
    definition = policy["definition"]
    assert definition["dead-letter-exchange"] == "alongside.dead-letters"
    assert definition["dead-letter-routing-key"] == service
    if queue_type == "quorum":
        assert definition["delivery-limit"] > 0
    else:
        # RabbitMQ skips, for a classic queue, a policy with a key classic
        # queues do not know (seen on 3.10): none here.
        assert "delivery-limit" not in definition
    # Not to the service's fixed queues, nor to nameko's RPC queue.
    for other in (f"{service}.dead-letters", f"rpc-{service}", "alongside.unrouted"):
        chosen = applied_policy(other, policies, queue_type)
        assert chosen is None or "dead-letter-routing-key" not in chosen["definition"]


# --- network policies -------------------------------------------------------------

def network_policies():
    return [d for p, d in k8s_documents()
            if p.parts[:2] == ("k8s", "base") and d["kind"] == "NetworkPolicy"]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def peer_matches(peer, source):
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(source["ip"])
        return (address in ipaddress.ip_network(block["cidr"])
                and not any(address in ipaddress.ip_network(e)
                            for e in block.get("except") or []))
    if source.get("outside"):
        return False        # not a pod: only an ipBlock names it
    namespace_selector = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector")
    if namespace_selector is None:
        if source["namespace"] != "alongside":
            return False
    elif not selects(namespace_selector, source["namespace_labels"]):
        return False
    return pod_selector is None or selects(pod_selector, source["labels"])


def port_matches(rule, port):
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port for p in ports)


def allowed(source, destination, port):
    """Whether the base NetworkPolicies let `source` open TCP `port` on
    `destination` (each {"namespace", "namespace_labels", "labels"}); pods
    in other namespaces have no egress policy of ours."""
    policies = network_policies()

    def direction(pod, kind, rules_key, peers_key, other):
        if pod["namespace"] != "alongside":
            return True
        chosen = [p for p in policies if kind in p["spec"]["policyTypes"]
                  and selects(p["spec"]["podSelector"], pod["labels"])]
        if not chosen:
            return True
        return any(peer_matches(peer, other) and port_matches(rule, port)
                   for p in chosen for rule in p["spec"].get(rules_key) or []
                   for peer in rule.get(peers_key) or [])

    return (direction(source, "Egress", "egress", "to", destination)
            and direction(destination, "Ingress", "ingress", "from", source))


def pod(labels, namespace="alongside"):
    return {"namespace": namespace, "labels": labels, "ip": "10.8.1.7",
            "namespace_labels": {"kubernetes.io/metadata.name": namespace}}


def outside(ip):
    """A host outside the cluster (an integrator's webhook, Notify)."""
    return {"namespace": None, "labels": {}, "namespace_labels": {}, "ip": ip,
            "outside": True}


def service_pod(service):
    deployment = next(d for p, d in k8s_documents()
                      if d["kind"] == "Deployment" and d["metadata"]["name"] == service)
    return pod(deployment["spec"]["template"]["metadata"]["labels"])


def rendered_pod_labels(kind, name):
    document = next(d for p, d in k8s_documents()
                    if d["kind"] == kind and d["metadata"]["name"] == name)
    return document["spec"]["template"]["metadata"]["labels"]


BROKER = pod({"app.kubernetes.io/name": "rabbitmq",
              "app.kubernetes.io/component": "rabbitmq",
              "app.kubernetes.io/part-of": "rabbitmq"})
PROMETHEUS = pod({"app.kubernetes.io/name": "prometheus"}, "monitoring")
INGRESS = pod({"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx")
STRANGER = pod({"app": "something-else"}, "default")


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reaches_only_the_broker_and_the_database(service):
    database = pod(rendered_pod_labels("StatefulSet", "mongo"))
    me = service_pod(service)
    assert allowed(me, BROKER, 5672)
    assert allowed(me, database, 27017)
    # The management API: the operators, and the gateway (integrators'
    # broker users).
    assert allowed(me, BROKER, 15672) is (service == "gateway")
    for other in SERVICES:
        if other != service:
            assert not allowed(me, service_pod(other), 8080), \
                f"{service} reaches {other} over HTTP, not through the broker"
    assert not allowed(me, STRANGER, 443)
    # Only messaging leaves the cluster: webhooks, Notify, the SMTP relay.
    for port in (443, 587):
        assert allowed(me, outside("93.184.216.34"), port) is (service == "messaging")
    assert not allowed(me, outside("93.184.216.34"), 5432)
    assert not allowed(me, outside("10.20.0.5"), 443), "private ranges are not the world"


@pytest.mark.parametrize("service", SERVICES)
def test_prometheus_scrapes_every_service_and_strangers_do_not(service):
    me = service_pod(service)
    assert allowed(PROMETHEUS, me, 8080)
    assert not allowed(STRANGER, me, 8080)
    assert allowed(INGRESS, me, 8080) is (service == "gateway")


def test_the_database_and_broker_are_closed_to_strangers():
    database = pod(rendered_pod_labels("StatefulSet", "mongo"))
    job = pod(rendered_pod_labels("Job", "mongo-init"))
    assert allowed(job, database, 27017)
    assert allowed(database, database, 27017), "replication between members"
    assert not allowed(STRANGER, database, 27017)
    assert not allowed(STRANGER, BROKER, 5672)
    assert allowed(PROMETHEUS, BROKER, 15692)
    assert allowed(BROKER, BROKER, 25672), "clustering between broker nodes"


# --- MongoDB ------------------------------------------------------------------------

def test_mongo_init_creates_a_user_for_every_service():
    job = next(d for p, d in k8s_documents() if d["kind"] == "Job")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for service in SERVICES:
        reference = env[f"MONGODB_URI_{service.upper()}"]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": "alongside-secrets",
                             "key": f"MONGODB_URI_{service.upper()}"}
    statefulset = next(d for p, d in k8s_documents() if d["kind"] == "StatefulSet")
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--replSet") + 1] == "rs0"
    assert "--keyFile" in args


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to parse init.js")
def test_mongo_init_script_parses():
    config_map = next(d for p, d in k8s_documents()
                      if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "mongo-init")
    result = subprocess.run(["node", "--check", "-"], input=config_map["data"]["init.js"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr

