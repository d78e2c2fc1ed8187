"""The deployment files agree with the code and with each other.

Plain and fast: they parse Dockerfile, .dockerignore, docker-compose.yml,
every YAML under k8s/, infra/rabbitmq/ and infra/prometheus/, and compare
them with the services found under services/ and with the AMQP topology of
shared.messaging. No Docker engine, cluster or broker is needed; the
entrypoint and healthcheck of the image are run here as plain processes
(the healthcheck against an HTTP server on 127.0.0.1), and the overlays are
rendered with `kubectl kustomize` where kubectl is installed.

A service's HTTP address is what its config.yaml makes of WEB_SERVER_ADDRESS
under a given environment, read with shared.config (nameko's parser): the
configs read it as ${<SERVICE>_HTTP_ADDRESS:host:port} or as
${<SERVICE>_HOST:host}:${<SERVICE>_PORT:port}. A setting a config.yaml reads
with an empty default, ${VAR:}, is a secret: compose must require it from the
environment and Kubernetes must take it from the Secret, never a value.
"""
import ast
import fnmatch
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(path.parent.name
                  for path in ROOT.glob("services/*/config.yaml"))
INFRA = {"rabbitmq", "mongo", "prometheus", "grafana", "mailpit"}
SECRET_NAME = "alongside-secrets"
SECRET_KEYS = ("AMQP_URI", "MONGODB_URI")
# Secrets a service needs once (the first admin): their Secret keys may be
# optional, so that they can be removed after the first start.
BOOTSTRAP_SECRETS = {"ALONGSIDE_ADMIN_EMAIL", "ALONGSIDE_ADMIN_PASSWORD"}
# Secrets a service can run without (an SMTP relay that wants no login, as
# mailpit in compose): compose may default them to empty (${VAR:-}) and
# their Secret keys may be optional.
OPTIONAL_SECRETS = {"SMTP_USERNAME", "SMTP_PASSWORD", "NOTIFY_API_KEY",
                    "RABBITMQ_MANAGEMENT_URL"}
# Settings read with an empty default that are not secret (Notify template
# ids): they go in the ConfigMap when set.
NOT_SECRETS = {"NOTIFY_SMS_TEMPLATE_ID", "NOTIFY_EMAIL_TEMPLATE_ID"}


def secret_key(service, variable):
    """The key of alongside-secrets a service's variable comes from: each
    service has a MongoDB user of its own, so MONGODB_URI comes from
    MONGODB_URI_<SERVICE>; every other secret from the key of its name."""
    if variable == "MONGODB_URI":
        return f"MONGODB_URI_{service.upper()}"
    return variable


def all_secret_keys():
    """Every key of alongside-secrets the Deployments may read."""
    return sorted({secret_key(s, v) for s in SERVICES
                   for v in (*SECRET_KEYS, *secret_vars(s))})
COMPOSE_MONGODB_URI = "mongodb://mongo:27017/?replicaSet=rs0"


def test_there_are_services_to_deploy():
    assert SERVICES, "no services/*/config.yaml found"


# --- helpers ----------------------------------------------------------------

class PlainLoader(yaml.SafeLoader):
    """yaml.SafeLoader without what nameko adds to it: shared.config (which
    conftest.py imports) calls nameko's setup_yaml_parser, after which
    yaml.safe_load replaces every ``${VAR...}`` scalar with the environment
    of the test run. Deployment files are read as written."""


PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("!env_var", "!raw_env_var")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(relative):
    with open(ROOT / relative) as stream:
        return yaml.load(stream, Loader=PlainLoader)


def service_config_text(service):
    return (ROOT / "services" / service / "config.yaml").read_text()


def config_env_var(service, key):
    """The environment variable a top-level setting of a service's
    config.yaml reads: ``KEY: ${VAR:default}`` gives VAR."""
    match = re.search(rf"^{key}:\s*\$\{{(\w+):", service_config_text(service),
                      re.MULTILINE)
    assert match, f"services/{service}/config.yaml: {key} reads no ${{VAR:...}}"
    return match.group(1)


def secret_vars(service):
    """The settings of a service's config.yaml with no default: ``${VAR:}``."""
    return sorted(set(re.findall(r"\$\{(\w+):\}", service_config_text(service)))
                  - NOT_SECRETS)


def address_variables(service):
    """The variables WEB_SERVER_ADDRESS reads: {"address": VAR} for
    ``${VAR:host:port}``, {"host": H, "port": P} for ``${H:host}:${P:port}``,
    the two forms the image's entrypoint and healthcheck give defaults to."""
    match = re.search(r"^WEB_SERVER_ADDRESS:\s*(.+?)\s*$",
                      service_config_text(service), re.MULTILINE)
    assert match, f"services/{service}/config.yaml sets no WEB_SERVER_ADDRESS"
    value = match.group(1)
    whole = re.fullmatch(r"\$\{(\w+):[^}]*\}", value)
    if whole:
        return {"address": whole.group(1)}
    parts = re.fullmatch(r"\$\{(\w+):[^}]*\}:\$\{(\w+):[^}]*\}", value)
    if parts:
        return {"host": parts.group(1), "port": parts.group(2)}
    pytest.fail(f"services/{service}/config.yaml: WEB_SERVER_ADDRESS: {value} is"
                f" neither ${{VAR:host:port}} nor ${{HOST:host}}:${{PORT:port}}")


def address_env(service, host, port):
    """The environment that asks a service to listen on host:port."""
    variables = address_variables(service)
    if "address" in variables:
        return {variables["address"]: f"{host}:{port}"}
    return {variables["host"]: host, variables["port"]: str(port)}


def http_address(service, env):
    """WEB_SERVER_ADDRESS as the service's config.yaml gives it under exactly
    the environment `env`, read as nameko reads it (shared.config)."""
    from shared.config import load_service_config
    with mock.patch.dict(os.environ, env, clear=True):
        return str(load_service_config(service)["WEB_SERVER_ADDRESS"])


def test_every_service_address_takes_one_of_the_known_forms():
    for service in SERVICES:
        names = address_variables(service)
        prefix = service.upper()
        assert names in ({"address": f"{prefix}_HTTP_ADDRESS"},
                         {"host": f"{prefix}_HOST", "port": f"{prefix}_PORT"}), \
            f"{service}: the image's container defaults do not cover {names}"
        assert http_address(service, address_env(service, "10.1.2.3", 9999)) \
            == "10.1.2.3:9999"


def test_gateway_secrets_are_its_settings_without_default():
    assert "gateway" in SERVICES
    assert secret_vars("gateway") == ["ALONGSIDE_ADMIN_EMAIL",
                                      "ALONGSIDE_ADMIN_PASSWORD",
                                      "GATEWAY_JWT_SECRET",
                                      "RABBITMQ_MANAGEMENT_URL"]


def messaging():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's deprecation notice
        import shared.messaging
    return shared.messaging


def service_class_names(service):
    """Classes in services/<service>/service.py with ``name = "<service>"``."""
    tree = ast.parse((ROOT / "services" / service / "service.py").read_text())
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if (isinstance(statement, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "name"
                            for t in statement.targets)
                    and isinstance(statement.value, ast.Constant)
                    and statement.value.value == service):
                found.append(node.name)
    return found


# --- Dockerfile ---------------------------------------------------------------

def dockerfile_instructions(text):
    """[(INSTRUCTION, arguments, {heredoc name: body})], comments dropped,
    continuation lines joined; enough of the Dockerfile grammar for us."""
    lines = text.splitlines()
    instructions = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        logical = line
        while logical.endswith("\\") and index < len(lines):
            following = lines[index]
            index += 1
            if following.lstrip().startswith("#"):
                continue
            logical = logical[:-1] + " " + following.strip()
        name, _, arguments = logical.strip().partition(" ")
        heredocs = {}
        for marker in re.findall(r"<<-?['\"]?(\w+)['\"]?", arguments):
            body = []
            while index < len(lines) and lines[index] != marker:
                body.append(lines[index])
                index += 1
            index += 1  # the closing marker
            heredocs[marker] = "\n".join(body) + "\n"
        instructions.append((name.upper(), arguments.strip(), heredocs))
    return instructions


@pytest.fixture(scope="module")
def dockerfile():
    return dockerfile_instructions((ROOT / "Dockerfile").read_text())


def stages(instructions):
    """The instructions of each stage, after the global ARGs."""
    result = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def global_args(instructions):
    values = {}
    for name, arguments, _ in instructions:
        if name == "FROM":
            break
        if name == "ARG":
            key, _, default = arguments.partition("=")
            values[key] = default
    return values


def resolve(text, values):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: values.get(m.group(1) or m.group(2), ""), text)


def exec_form(arguments):
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def final_stage(dockerfile):
    return stages(dockerfile)[-1]


def runtime_uid(dockerfile):
    users = [args for name, args, _ in final_stage(dockerfile) if name == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    return users[-1].split(":")[0]


def entrypoint_script(dockerfile):
    """The path and text of the script the image's ENTRYPOINT runs."""
    stage = final_stage(dockerfile)
    entrypoints = [args for name, args, _ in stage if name == "ENTRYPOINT"]
    assert entrypoints, "the runtime stage has no ENTRYPOINT"
    command = exec_form(entrypoints[-1])
    for name, arguments, heredocs in stage:
        if name == "COPY" and heredocs and arguments.split()[-1] == command[0]:
            return command[0], next(iter(heredocs.values()))
    pytest.fail(f"ENTRYPOINT {command[0]} is not written by a COPY heredoc")


def test_dockerfile_is_multi_stage_on_slim_python_311(dockerfile):
    args = global_args(dockerfile)
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    builder, runtime = all_stages[0], all_stages[-1]
    builder_from = resolve(builder[0][1], args).split()
    runtime_from = resolve(runtime[0][1], args).split()
    assert builder_from[-2].upper() == "AS"
    builder_name = builder_from[-1]
    assert runtime_from[0].startswith("python:3.11-slim"), runtime_from

    builder_text = " ".join(a for _, a, _ in builder)
    assert "requirements.txt" in builder_text
    assert re.search(r"pip install .*(-r|--requirement) \S*requirements\.txt",
                     builder_text)
    copies_from_builder = [a for n, a, _ in runtime
                           if n == "COPY" and f"--from={builder_name}" in a]
    assert copies_from_builder, "the runtime stage copies nothing from the builder"
    # The runtime stage installs no compiler and no dependencies of its own.
    runtime_runs = " ".join(a for n, a, _ in runtime if n == "RUN")
    assert "pip install" not in runtime_runs
    assert "build-essential" not in runtime_runs


def test_dockerfile_copies_only_what_exists(dockerfile):
    for name, arguments, heredocs in dockerfile:
        if name != "COPY" or heredocs or "--from=" in arguments:
            continue
        sources = [a for a in shlex.split(arguments) if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"


def test_image_runs_as_a_numeric_non_root_user(dockerfile):
    uid = runtime_uid(dockerfile)
    assert uid.isdigit(), "a numeric USER lets Kubernetes verify runAsNonRoot"
    assert int(uid) >= 1000


def test_image_healthcheck_asks_health_ready_with_python(dockerfile):
    checks = [a for n, a, _ in final_stage(dockerfile) if n == "HEALTHCHECK"]
    assert checks, "the runtime stage has no HEALTHCHECK"
    options, _, command = checks[-1].partition("CMD ")
    argv = exec_form(command)
    assert argv[0] == "python" and argv[1] == "-c"
    assert "/health/ready" in argv[2]
    assert "curl" not in checks[-1] and "wget" not in checks[-1]
    compile(argv[2], "HEALTHCHECK", "exec")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/health/ready" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("port_from", ["HTTP_PORT", "service variables"])
@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_image_healthcheck_follows_the_service_http_address(
        dockerfile, service, port_from, status, healthy):
    """Run as in the image (working directory and PYTHONPATH the code), the
    healthcheck finds the port from the container default (HTTP_PORT, which
    the entrypoint also uses) or from the variables the service's
    WEB_SERVER_ADDRESS reads, which win over it."""
    checks = [a for n, a, _ in final_stage(dockerfile) if n == "HEALTHCHECK"]
    argv = exec_form(checks[-1].partition("CMD ")[2])
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT),
               "SERVICE": service}
        if port_from == "HTTP_PORT":
            env["HTTP_PORT"] = str(server.server_port)
        else:
            env["HTTP_PORT"] = "1"  # nothing listens there
            env.update(address_env(service, "0.0.0.0", server.server_port))
        result = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=env,
                                capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


@pytest.fixture
def fake_nameko(tmp_path):
    """A `nameko` on PATH that records its argv and HTTP address."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record.json"
    fake = bin_dir / "nameko"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}},"
        f" open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    # The entrypoint reads the config with `python`, the image's virtualenv.
    python = bin_dir / "python"
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    python.chmod(0o755)
    return bin_dir, record


@pytest.fixture
def entrypoint(dockerfile, tmp_path):
    _, text = entrypoint_script(dockerfile)
    script = tmp_path / "alongside-service"
    script.write_text(text)
    return script


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("http_port, port", [(None, 8080), ("9090", 9090)])
def test_entrypoint_runs_the_service_named_by_SERVICE(
        service, http_port, port, entrypoint, fake_nameko):
    bin_dir, record = fake_nameko
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "SERVICE": service}
    if http_port:
        env["HTTP_PORT"] = http_port
    result = subprocess.run(["sh", str(entrypoint)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    ran = json.loads(record.read_text())
    assert ran["argv"][:3] == ["run", "--config",
                               f"services/{service}/config.yaml"]
    module, _, class_name = ran["argv"][3].partition(":")
    assert module == f"services.{service}.service"
    assert class_name in service_class_names(service), (
        f"{class_name} is not the nameko class of services/{service}/service.py;"
        f" set SERVICE_CLASS or follow the <Name>Service rule")
    # In a container: every interface, HTTP_PORT (8080 unless set).
    assert http_address(service, ran["env"]) == f"0.0.0.0:{port}"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_keeps_the_address_it_is_given(service, entrypoint, fake_nameko):
    bin_dir, record = fake_nameko
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "SERVICE": service, "HTTP_PORT": "8080",
           **address_env(service, "127.0.0.1", 9000)}
    result = subprocess.run(["sh", str(entrypoint)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    ran = json.loads(record.read_text())
    assert http_address(service, ran["env"]) == "127.0.0.1:9000"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_refuses_an_address_nameko_cannot_bind(
        service, entrypoint, fake_nameko):
    """E.g. the GATEWAY_PORT=tcp://<ip>:8080 Kubernetes injects for a Service
    named gateway where service links are on."""
    bin_dir, record = fake_nameko
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "SERVICE": service,
           **address_env(service, "0.0.0.0", "tcp://10.0.0.1:8080")}
    result = subprocess.run(["sh", str(entrypoint)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 78, result.stderr
    assert not record.exists()
    assert "WEB_SERVER_ADDRESS" in result.stderr


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
@pytest.mark.parametrize("value", ["", "no_such_service", "../shared"])
def test_entrypoint_refuses_an_unknown_service(value, entrypoint, fake_nameko):
    bin_dir, record = fake_nameko
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "SERVICE": value}
    result = subprocess.run(["sh", str(entrypoint)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 64
    assert not record.exists()
    for service in SERVICES:
        assert service in result.stderr


# --- .dockerignore --------------------------------------------------------------

def dockerignore_patterns():
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.strip("/"))
    return patterns


def ignored(path, patterns):
    """Whether the build context leaves out `path` (or a folder above it).
    fnmatch's `*` also crosses `/`, so this errs towards "ignored"."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        alternatives = {pattern}
        if pattern.startswith("**/"):
            alternatives.add(pattern[3:])
        if any(fnmatch.fnmatch(c, p) for c in candidates for p in alternatives):
            result = not negate
    return result


def test_dockerignore_leaves_out_local_state():
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".local/x", ".git/HEAD", ".env",
                 "shared/__pycache__/x.pyc", ".pytest_cache/v"):
        assert ignored(path, patterns), f"{path} would be sent to the build"


def test_dockerignore_keeps_what_the_image_needs():
    patterns = dockerignore_patterns()
    needed = ["requirements.txt"]
    for directory in ("shared", "services"):
        needed += [str(p.relative_to(ROOT)) for p in (ROOT / directory).rglob("*.py")
                   if "tests" not in p.relative_to(ROOT).parts
                   and "__pycache__" not in p.parts]
    needed += [f"services/{s}/config.yaml" for s in SERVICES]
    # Data files the services read at run time (e.g. journeys' conversion
    # table) go in too.
    for directory in ("shared", "services"):
        needed += [str(p.relative_to(ROOT)) for p in (ROOT / directory).rglob("*")
                   if p.is_file() and p.suffix not in (".pyc", ".pyo")
                   and "tests" not in p.relative_to(ROOT).parts
                   and "__pycache__" not in p.parts]
    for path in needed:
        assert not ignored(path, patterns), f"{path} is left out of the build"


# --- docker-compose.yml -----------------------------------------------------

def interpolate(value):
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR}, with defaults;
    ${VAR:?message} / ${VAR?message} (required) give the environment's value
    or ""."""
    return re.sub(r"\$\{(\w+)(?::?([-?])([^}]*))?\}",
                  lambda m: os.environ.get(m.group(1))
                  or (m.group(3) if m.group(2) == "-" else "") or "",
                  value)


def required_reference(value, var):
    """Whether a compose value is ${VAR:?message} or ${VAR?message}: the
    environment's value or an error, never a default; for an optional
    secret, also ${VAR:-} / ${VAR}: the environment's value or nothing."""
    if var in OPTIONAL_SECRETS and re.fullmatch(rf"\$\{{{var}(:?-)?\}}", value):
        return True
    return re.fullmatch(rf"\$\{{{var}:?\?[^}}]*\}}", value) is not None


@pytest.fixture(scope="module")
def compose():
    return load_yaml("docker-compose.yml")


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def bind_mounts(service):
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def mount_target(service, source):
    targets = [t for s, t in bind_mounts(service)
               if os.path.normpath(s) == os.path.normpath(source)]
    assert targets, f"{source} is not mounted"
    return targets[0]


def test_compose_runs_every_service_and_the_infrastructure(compose):
    names = set(compose["services"])
    assert INFRA <= names
    assert set(SERVICES) <= names, set(SERVICES) - names


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_is_built_from_the_dockerfile(compose, service):
    spec = compose["services"][service]
    build = spec["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get(
        "dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).is_file()
    assert environment(spec)["SERVICE"] == service


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_environment(compose, service):
    spec = compose["services"][service]
    env = environment(spec)
    for key in SECRET_KEYS:
        assert env.get(key), f"{service}: {key} is not set"
    amqp = urlparse(interpolate(env["AMQP_URI"]))
    assert amqp.scheme == "amqp" and amqp.hostname == "rabbitmq"
    assert (amqp.port or 5672) == 5672
    broker = environment(compose["services"]["rabbitmq"])
    assert amqp.username == interpolate(broker["RABBITMQ_DEFAULT_USER"])
    assert amqp.password == interpolate(broker["RABBITMQ_DEFAULT_PASS"])

    assert env["MONGODB_URI"] == COMPOSE_MONGODB_URI
    address = http_address(service, {k: interpolate(v) for k, v in env.items()})
    assert address == "0.0.0.0:8080", \
        f"{service} would listen on {address}: set {address_variables(service)}"
    database_var = config_env_var(service, "MONGODB_DATABASE")
    assert env.get(database_var) == f"alongside_{service}"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_waits_for_healthy_broker_and_database(compose, service):
    depends = compose["services"][service].get("depends_on") or {}
    for dependency in ("rabbitmq", "mongo"):
        assert depends.get(dependency, {}).get("condition") == "service_healthy"
        assert compose["services"][dependency].get("healthcheck", {}).get("test")


def rpc_targets(service):
    """The services a service calls: ``RpcProxy("<name>")`` (or
    ServiceRpc / ClusterRpcProxy with a name) in services/<service>/*.py."""
    targets = set()
    for path in sorted((ROOT / "services" / service).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None))
                    in ("RpcProxy", "ServiceRpc")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                targets.add(node.args[0].value)
    return sorted(targets - {service})


def test_the_gateway_calls_services_over_rpc():
    """rpc_targets finds what it is meant to (the test below relies on it)."""
    assert "gateway" in SERVICES
    assert "referrals" in rpc_targets("gateway")


def depends_on(compose, service):
    depends = compose["services"][service].get("depends_on") or {}
    if isinstance(depends, list):
        depends = {name: {"condition": "service_started"} for name in depends}
    return depends


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_waits_for_the_services_it_calls(compose, service):
    """A caller started before the service it calls over RPC fails its first
    requests; compose starts it once they are healthy. Where two services
    call each other (messaging asks the gateway for a site's coordinators,
    the gateway calls messaging), compose cannot wait both ways: the one
    whose target waits for it is let off."""
    depends = depends_on(compose, service)
    for target in rpc_targets(service):
        assert target in SERVICES, f"{service} calls {target}, not a service"
        if service in depends_on(compose, target):
            continue
        assert depends.get(target, {}).get("condition") == "service_healthy", \
            f"{service} calls {target} over RPC but does not wait for it"


def test_compose_dependencies_have_no_cycle(compose):
    """compose refuses to start a stack whose depends_on make a cycle."""
    visiting, done = set(), set()

    def visit(name, path):
        assert name not in visiting, f"depends_on cycle: {' -> '.join(path)}"
        if name in done:
            return
        visiting.add(name)
        for target in depends_on(compose, name):
            assert target in compose["services"], f"{name} waits for {target}?"
            visit(target, path + [target])
        visiting.discard(name)
        done.add(name)

    for name in compose["services"]:
        visit(name, [name])


@pytest.mark.parametrize("service", SERVICES)
def test_compose_requires_the_service_secrets_from_the_environment(
        compose, service):
    env = environment(compose["services"][service])
    for var in secret_vars(service):
        if var in OPTIONAL_SECRETS and var not in env:
            continue
        assert required_reference(env.get(var, ""), var), \
            f"{service}: {var} must be ${{{var}:?message}}, not {env.get(var)!r}"


def walk(node, path=()):
    """(path, key, value) for every mapping entry and list item in a
    parsed YAML document; key is None for list items."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield path, None, value
            yield from walk(value, path + (index,))


def all_secret_vars():
    return sorted({var for service in SERVICES for var in secret_vars(service)})


def test_compose_commits_no_secret_value(compose):
    """Anywhere in the file (anchors, other services), a secret is only ever
    a required reference to the environment, and no env_file brings one."""
    for path, key, value in walk(compose):
        assert key != "env_file", f"{path}: env_file"
        for var in all_secret_vars():
            if key == var:
                assert isinstance(value, str) and required_reference(value, var), \
                    f"{'.'.join(map(str, path))}: {var} = {value!r}"
            if isinstance(value, str) and value.startswith(f"{var}="):
                assert required_reference(value.partition("=")[2], var), \
                    f"{'.'.join(map(str, path))}: {value!r}"


def test_compose_mongo_is_a_replica_set_that_initiates_itself(compose):
    mongo = compose["services"]["mongo"]
    command = mongo["command"]
    command = command if isinstance(command, list) else shlex.split(command)
    replica_set = parse_qs(urlparse(COMPOSE_MONGODB_URI).query)["replicaSet"][0]
    assert command[command.index("--replSet") + 1] == replica_set
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check
    assert f"_id: '{replica_set}'" in check
    assert "host: 'mongo:27017'" in check  # the name the services resolve


def test_compose_rabbitmq_loads_the_definitions(compose):
    rabbitmq = compose["services"]["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3.")
    assert rabbitmq["image"].endswith("-management")
    conf = rabbitmq_conf()
    assert mount_target(rabbitmq, "./infra/rabbitmq/rabbitmq.conf") == \
        "/etc/rabbitmq/rabbitmq.conf"
    assert mount_target(rabbitmq, "./infra/rabbitmq/definitions.json") == \
        conf["load_definitions"]


def test_compose_rabbitmq_enables_management_and_prometheus(compose):
    rabbitmq = compose["services"]["rabbitmq"]
    assert mount_target(rabbitmq, "./infra/rabbitmq/enabled_plugins") == \
        "/etc/rabbitmq/enabled_plugins"
    text = (ROOT / "infra/rabbitmq/enabled_plugins").read_text().strip()
    match = re.fullmatch(r"\[([a-z_,\s]*)\]\.", text)
    assert match, f"enabled_plugins is not an Erlang list: {text}"
    plugins = {p.strip() for p in match.group(1).split(",")}
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= plugins
    prometheus = load_yaml("infra/prometheus/prometheus.yml")
    assert any(("rabbitmq", 15692) in scrape_targets(job)
               for job in prometheus["scrape_configs"])


def test_compose_messaging_sends_email_to_mailpit(compose):
    messaging = environment(compose["services"]["messaging"])
    assert messaging["SMTP_HOST"] == "mailpit"
    assert messaging["SMTP_PORT"] == "1025"
    mailpit = compose["services"]["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit:")
    assert any(str(p).endswith(":1025") for p in mailpit["ports"])
    assert "mailpit" in depends_on(compose, "messaging")


def test_compose_grafana_is_provisioned_from_the_repository(compose):
    grafana = compose["services"]["grafana"]
    assert mount_target(grafana, "./infra/grafana/provisioning") == \
        "/etc/grafana/provisioning"
    provider = load_yaml("infra/grafana/provisioning/dashboards/alongside.yml")
    path = provider["providers"][0]["options"]["path"]
    assert mount_target(grafana, "./infra/grafana/dashboards") == path
    datasource = load_yaml("infra/grafana/provisioning/datasources/prometheus.yml")
    url = urlparse(datasource["datasources"][0]["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    env = environment(grafana)
    assert required_reference(env["GF_SECURITY_ADMIN_PASSWORD"],
                              "GRAFANA_ADMIN_PASSWORD")


def test_compose_rabbitmq_healthcheck_creates_the_user(compose):
    """A node that loads definitions at boot seeds no default user, and the
    definitions hold none: the healthcheck script makes it."""
    rabbitmq = compose["services"]["rabbitmq"]
    script = mount_target(rabbitmq, "./infra/rabbitmq/healthcheck.sh")
    assert script in rabbitmq["healthcheck"]["test"]
    text = (ROOT / "infra/rabbitmq/healthcheck.sh").read_text()
    for needed in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS",
                   "authenticate_user", "add_user", "set_permissions"):
        assert needed in text
    if shutil.which("sh"):
        subprocess.run(["sh", "-n", str(ROOT / "infra/rabbitmq/healthcheck.sh")],
                       check=True)


def test_compose_bind_mounts_exist(compose):
    for name, spec in compose["services"].items():
        for source, _ in bind_mounts(spec):
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_compose_publishes_on_loopback_without_clashes(compose):
    published = []
    for name, spec in compose["services"].items():
        for port in spec.get("ports") or []:
            text = str(port)
            assert text.startswith("127.0.0.1:"), f"{name}: {text} is public"
            published.append(text.split(":")[1])
    assert len(published) == len(set(published))


def test_compose_prometheus_uses_the_repository_config(compose):
    prometheus = compose["services"]["prometheus"]
    assert mount_target(prometheus, "./infra/prometheus/prometheus.yml") == \
        "/etc/prometheus/prometheus.yml"
    # rule_files are relative to the config file: rules/ beside it.
    config = load_yaml("infra/prometheus/prometheus.yml")
    assert config["rule_files"] == ["rules/*.yml"]
    assert mount_target(prometheus, "./infra/prometheus/rules") == \
        "/etc/prometheus/rules"
    assert list((ROOT / "infra/prometheus/rules").glob("*.yml"))


# --- infra/rabbitmq -----------------------------------------------------------

def rabbitmq_conf():
    settings = {}
    for line in (ROOT / "infra/rabbitmq/rabbitmq.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, separator, value = line.partition("=")
            assert separator, f"rabbitmq.conf: not `key = value`: {line}"
            settings[key.strip()] = value.strip()
    return settings


@pytest.fixture(scope="module")
def definitions():
    with open(ROOT / "infra/rabbitmq/definitions.json") as stream:
        return json.load(stream)


def by_name(items):
    names = [item["name"] for item in items]
    assert len(names) == len(set(names)), "declared twice"
    return {item["name"]: item for item in items}


def expected_exchange(exchange):
    return {"type": exchange.type, "durable": bool(exchange.durable),
            "auto_delete": bool(exchange.auto_delete), "internal": False,
            "arguments": dict(exchange.arguments or {})}


def expected_queue(queue):
    return {"durable": bool(queue.durable), "auto_delete": bool(queue.auto_delete),
            "arguments": dict(queue.queue_arguments or {})}


def expected_binding(queue):
    return {"source": queue.exchange.name, "destination": queue.name,
            "destination_type": "queue", "routing_key": queue.routing_key or "",
            "arguments": dict(queue.binding_arguments or {})}


def topology_queues():
    """Every queue shared.messaging declares with a fixed name."""
    m = messaging()
    config = __import__("shared.config", fromlist=["load_service_config"])
    delays = set(m.DEFAULT_RETRY_DELAYS_MS)
    for service in SERVICES:
        delays.update(m.retry_settings(config.load_service_config(service))[1])
    return ([m.unrouted_queue()]
            + [m.dead_letter_queue(service) for service in SERVICES]
            + [m.retry_queue(delay) for delay in sorted(delays)])


def test_definitions_hold_no_credentials(definitions):
    assert not definitions.get("users")
    assert not definitions.get("permissions")
    assert not definitions.get("topic_permissions")


def test_definitions_declare_what_they_use(definitions):
    vhosts = {v["name"] for v in definitions["vhosts"]}
    assert "/" in vhosts
    exchanges = by_name(definitions["exchanges"])
    queues = by_name(definitions["queues"])
    for item in (definitions["exchanges"] + definitions["queues"]
                 + definitions["bindings"]):
        assert item["vhost"] in vhosts
    for binding in definitions["bindings"]:
        assert binding["source"] in exchanges
        assert binding["destination_type"] == "queue"
        assert binding["destination"] in queues
    for exchange in exchanges.values():
        alternate = exchange["arguments"].get("alternate-exchange")
        assert alternate is None or alternate in exchanges


@pytest.mark.parametrize("service", SERVICES)
def test_definitions_declare_each_service_event_exchange(definitions, service):
    m = messaging()
    exchanges = by_name(definitions["exchanges"])
    name = f"{service}.events"
    assert name == m.event_exchange(service).name
    assert name in exchanges, f"{name} is not declared"
    declared = exchanges[name]
    assert declared["arguments"]["alternate-exchange"] == m.UNROUTED_EXCHANGE
    # Exactly what the services declare, or their declare is refused
    # (PRECONDITION_FAILED) by a broker that loaded these definitions.
    assert {k: declared[k] for k in expected_exchange(m.event_exchange(service))} \
        == expected_exchange(m.event_exchange(service))


def test_definitions_match_the_shared_messaging_topology(definitions):
    m = messaging()
    exchanges = by_name(definitions["exchanges"])
    queues = by_name(definitions["queues"])
    bindings = [{k: b[k] for k in ("source", "destination", "destination_type",
                                   "routing_key", "arguments")}
                for b in definitions["bindings"]]
    assert m.UNROUTED_EXCHANGE in exchanges
    assert m.UNROUTED_QUEUE in queues
    assert m.DEAD_LETTER_EXCHANGE in exchanges
    for queue in topology_queues():
        assert queue.name in queues, f"queue {queue.name} is not declared"
        declared = queues[queue.name]
        assert {k: declared[k] for k in expected_queue(queue)} == \
            expected_queue(queue), queue.name
        exchange = exchanges.get(queue.exchange.name)
        assert exchange, f"exchange {queue.exchange.name} is not declared"
        assert {k: exchange[k] for k in expected_exchange(queue.exchange)} == \
            expected_exchange(queue.exchange), queue.exchange.name
        assert expected_binding(queue) in bindings, f"{queue.name} is not bound"


def test_definitions_exchange_and_queue_fields_are_complete(definitions):
    for exchange in definitions["exchanges"]:
        assert set(exchange) >= {"name", "vhost", "type", "durable",
                                 "auto_delete", "internal", "arguments"}
        assert exchange["durable"] is True
    for queue in definitions["queues"]:
        assert set(queue) >= {"name", "vhost", "durable", "auto_delete",
                              "arguments"}
        assert queue["durable"] is True


# --- infra/prometheus --------------------------------------------------------

def scrape_targets(job):
    """(host, port) pairs a scrape job reaches."""
    targets = []
    for static in job.get("static_configs") or []:
        for target in static.get("targets") or []:
            host, _, port = target.rpartition(":")
            targets.append((host, int(port)))
    for dns in job.get("dns_sd_configs") or []:
        for name in dns.get("names") or []:
            targets.append((name, int(dns["port"])))
    return targets


def test_prometheus_scrapes_every_service():
    config = load_yaml("infra/prometheus/prometheus.yml")
    jobs = config["scrape_configs"]
    names = [job["job_name"] for job in jobs]
    assert len(names) == len(set(names))
    for service in SERVICES:
        scraping = [job for job in jobs if (service, 8080) in scrape_targets(job)]
        assert scraping, f"no scrape job reaches {service}:8080"
        assert all(job.get("metrics_path", "/metrics") == "/metrics"
                   for job in scraping)


# --- k8s --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def k8s_documents():
    """(path, document) of every YAML document under k8s/, parsed once per
    run (a tuple: callers copy a document before changing it)."""
    documents = []
    for path in sorted((ROOT / "k8s").rglob("*.y*ml")):
        with open(path) as stream:
            for document in yaml.load_all(stream, Loader=PlainLoader):
                if document is not None:
                    documents.append((path.relative_to(ROOT), document))
    return tuple(documents)


def base_documents(kind):
    return {doc["metadata"]["name"]: doc for path, doc in k8s_documents()
            if path.parts[:2] == ("k8s", "base") and doc.get("kind") == kind}


def kustomization(directory):
    return load_yaml(Path("k8s") / directory / "kustomization.yaml")


def test_every_k8s_yaml_is_a_typed_object():
    documents = k8s_documents()
    assert documents
    for path, document in documents:
        assert isinstance(document, dict), path
        assert document.get("apiVersion") and document.get("kind"), path


def test_no_secret_values_are_committed():
    for path, document in k8s_documents():
        if document.get("kind") == "Secret":
            assert not document.get("data") and not document.get("stringData"), \
                f"{path} commits secret values"
        if document.get("kind") == "Kustomization":
            assert not document.get("secretGenerator"), \
                f"{path} generates a Secret from committed values"


def test_base_kustomization_lists_every_base_file():
    base = ROOT / "k8s/base"
    resources = kustomization("base")["resources"]
    for resource in resources:
        assert (base / resource).is_file(), resource
    files = {p.name for p in base.glob("*.y*ml")} - {"kustomization.yaml"}
    assert files == set(resources), "a manifest in k8s/base is not listed"


def container_of(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_env(deployment):
    """Literal env values, envFrom ConfigMaps resolved from k8s/base."""
    container = container_of(deployment)
    config_maps = base_documents("ConfigMap")
    env = {}
    for source in container.get("envFrom") or []:
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"ConfigMap {name} is not in k8s/base"
        env.update(config_maps[name]["data"])
    for item in container.get("env") or []:
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


@pytest.fixture(params=SERVICES)
def deployment(request):
    deployments = base_documents("Deployment")
    assert request.param in deployments, \
        f"k8s/base has no Deployment {request.param}"
    return request.param, deployments[request.param]


def test_deployment_runs_the_service(deployment):
    service, manifest = deployment
    spec = manifest["spec"]
    selector = spec["selector"]["matchLabels"]
    labels = spec["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    container = container_of(manifest)
    assert container["image"].split(":")[0] == "alongside"
    env = container_env(manifest)
    assert env["SERVICE"] == service
    assert env[config_env_var(service, "MONGODB_DATABASE")] == f"alongside_{service}"


def test_deployment_reads_credentials_from_the_secret(deployment):
    service, manifest = deployment
    env = {item["name"]: item for item in container_of(manifest).get("env") or []}
    for key in (*SECRET_KEYS, *secret_vars(service)):
        assert key in env, f"{service}: {key} is not set"
        assert "value" not in env[key], f"{service}: {key} has a committed value"
        reference = dict(env[key].get("valueFrom", {}).get("secretKeyRef") or {})
        optional = reference.pop("optional", False)
        assert reference == {"name": SECRET_NAME, "key": secret_key(service, key)}, \
            f"{service}: {key} must come from the Secret {SECRET_NAME}"
        assert not optional or key in BOOTSTRAP_SECRETS | OPTIONAL_SECRETS, \
            f"{service}: {key} is needed at every start, it cannot be optional"
    for source in container_of(manifest).get("envFrom") or []:
        assert "secretRef" not in source or \
            source["secretRef"]["name"] == SECRET_NAME
    config_maps = base_documents("ConfigMap")
    for config_map in config_maps.values():
        assert not {*SECRET_KEYS, *secret_vars(service)} & \
            set(config_map.get("data") or {})


def test_k8s_commits_no_secret_value():
    """Anywhere under k8s/ (overlays and patches too), a secret is only ever
    named with a secretKeyRef: never a ConfigMap entry, an env value or a
    generator literal."""
    secrets = {*SECRET_KEYS, *all_secret_vars(), *all_secret_keys()}
    for file, document in k8s_documents():
        for path, key, value in walk(document):
            where = f"{file}: {'.'.join(map(str, path))}"
            assert key not in secrets, f"{where}: {key} has a value"
            if isinstance(value, dict) and value.get("name") in secrets:
                assert "value" not in value, f"{where}: {value['name']} has a value"
            if isinstance(value, str):
                assert not value.startswith(tuple(f"{s}=" for s in secrets)), \
                    f"{where}: {value.partition('=')[0]} has a value"


def test_deployment_probes_reach_the_service_port(deployment):
    service, manifest = deployment
    container = container_of(manifest)
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    env = {k: v for k, v in container_env(manifest).items() if isinstance(v, str)}
    address = http_address(service, env)
    host, _, port = address.rpartition(":")
    assert host == "0.0.0.0" and int(port) in ports.values()
    for probe, path in (("readinessProbe", "/health/ready"),
                        ("livenessProbe", "/health/live")):
        assert probe in container, f"{service}: no {probe}"
        get = container[probe]["httpGet"]
        assert get["path"] == path
        target = ports.get(get["port"], get["port"])
        assert target == int(port), f"{service}: {probe} misses the HTTP port"


def test_deployment_gets_no_service_link_variables(deployment):
    """With service links, Kubernetes puts <NAME>_PORT=tcp://<ip>:<port> (and
    more) in a pod for every Service of the namespace: for the Service
    gateway, GATEWAY_PORT, the very variable the gateway reads its port from.
    The services find each other over AMQP and need none of them."""
    service, manifest = deployment
    assert manifest["spec"]["template"]["spec"].get("enableServiceLinks") is False


def test_deployment_has_resource_requests_and_limits(deployment):
    service, manifest = deployment
    resources = container_of(manifest)["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(kind) or {}), \
            f"{service}: {kind} lack cpu or memory"


def test_deployment_is_non_root_and_read_only(deployment, dockerfile):
    service, manifest = deployment
    pod = manifest["spec"]["template"]["spec"]
    container = container_of(manifest)
    context = {**(pod.get("securityContext") or {}),
               **(container.get("securityContext") or {})}
    assert context.get("runAsNonRoot") is True
    if "runAsUser" in context:
        assert str(context["runAsUser"]) == runtime_uid(dockerfile)
    container_context = container["securityContext"]
    assert container_context.get("readOnlyRootFilesystem") is True
    assert container_context.get("allowPrivilegeEscalation") is False
    assert "ALL" in container_context.get("capabilities", {}).get("drop", [])
    assert not container_context.get("privileged")


@pytest.mark.parametrize("service", SERVICES)
def test_service_selects_the_deployment_pods(service):
    services = base_documents("Service")
    assert service in services, f"k8s/base has no Service {service}"
    manifest = services[service]
    deployment = base_documents("Deployment")[service]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert manifest["spec"]["selector"].items() <= labels.items()
    port_names = {p.get("name") for p in container_of(deployment)["ports"]}
    port_numbers = {p["containerPort"] for p in container_of(deployment)["ports"]}
    for port in manifest["spec"]["ports"]:
        assert port["targetPort"] in port_names | port_numbers


OVERLAYS = ("dev", "production")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_on_base(overlay):
    directory = ROOT / "k8s/overlays" / overlay
    document = kustomization(f"overlays/{overlay}")
    assert "../../base" in document["resources"]
    assert document.get("namespace")
    for resource in document["resources"]:
        assert (directory / resource).exists(), resource
    for patch in document.get("patches") or []:
        if "path" in patch:
            assert (directory / patch["path"]).is_file(), patch["path"]


def overlay_documents(overlay, kind):
    """The documents of a kind an overlay adds to base (its resources other
    than ../../base)."""
    found = {}
    for resource in kustomization(f"overlays/{overlay}")["resources"]:
        if resource.startswith(".."):
            continue
        with open(ROOT / "k8s/overlays" / overlay / resource) as stream:
            for document in yaml.load_all(stream, Loader=PlainLoader):
                if document and document.get("kind") == kind:
                    found[document["metadata"]["name"]] = document
    return found


def test_base_deployments_leave_replicas_to_the_overlay():
    """A fixed spec.replicas would undo the autoscaler's count at every
    apply: dev sets it, production's HorizontalPodAutoscalers do."""
    for name, deployment in base_documents("Deployment").items():
        assert "replicas" not in deployment["spec"], name


def test_dev_runs_one_replica_and_production_autoscales_from_more():
    replicas = kustomization("overlays/dev").get("replicas") or []
    dev = {r["name"]: r["count"] for r in replicas}
    assert not kustomization("overlays/production").get("replicas")
    autoscalers = overlay_documents("production", "HorizontalPodAutoscaler")
    for service in SERVICES:
        assert dev.get(service) == 1, f"dev: {service} has no replica count"
        hpa = autoscalers.get(service)
        assert hpa, f"production: no HorizontalPodAutoscaler for {service}"
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", service)
        assert hpa["spec"]["minReplicas"] > dev[service]
        assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
        metrics = hpa["spec"]["metrics"]
        assert metrics and all(m["type"] == "Resource" for m in metrics)


def test_every_service_has_a_disruption_budget_that_never_blocks_a_drain():
    budgets = base_documents("PodDisruptionBudget")
    for service in SERVICES:
        budget = budgets.get(service)
        assert budget, f"no PodDisruptionBudget for {service}"
        labels = base_documents("Deployment")[service]["spec"]["template"][
            "metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # With one replica (dev) minAvailable: 1 would block every drain.
        assert budget["spec"].get("maxUnavailable") == 1
        assert "minAvailable" not in budget["spec"]


def test_k8s_readme_says_how_to_create_the_secret():
    text = (ROOT / "k8s/README.md").read_text()
    assert SECRET_NAME in text
    for key in (*SECRET_KEYS, *all_secret_vars(), *all_secret_keys()):
        assert f"`{key}`" in text, f"k8s/README.md does not document {key}"


def kustomize_command():
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


@pytest.mark.skipif(kustomize_command() is None, reason="no kubectl or kustomize")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(overlay):
    result = subprocess.run(
        [*kustomize_command(), str(ROOT / "k8s/overlays" / overlay)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    namespace = kustomization(f"overlays/{overlay}")["namespace"]
    replicas = {r["name"]: r["count"]
                for r in kustomization(f"overlays/{overlay}").get("replicas") or []}
    deployments = {d["metadata"]["name"]: d for d in documents
                   if d["kind"] == "Deployment"}
    autoscalers = {d["metadata"]["name"] for d in documents
                   if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        assert deployment["metadata"]["namespace"] == namespace
        if name in autoscalers:
            assert "replicas" not in deployment["spec"], name
        else:
            assert deployment["spec"]["replicas"] == replicas[name]
        image = container_of(deployment)["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{image} has no tag"
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == namespace, document["kind"]
    assert not [d for d in documents if d["kind"] == "Secret"]
