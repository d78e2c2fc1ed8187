"""Start and stop Alongside on one machine with no Docker.

    python infra/local/localctl.py up       broker, datastore, every service
    python infra/local/localctl.py broker   make sure RabbitMQ answers (tests)
    python infra/local/localctl.py status
    python infra/local/localctl.py down     stop what `up` started, by pid

RabbitMQ is used where it answers on 5672, started if installed, installed
with apt if missing (as root). The datastore is a MongoDB wire-protocol
server (secantusdb) on 127.0.0.1:27017, its data in .local/data/mongo, kept
across restarts. Each service runs as its own `nameko run` process with its
own config; logs in .local/logs, pids in .local/run. Running `up` twice
starts nothing twice.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

LOCAL = os.path.join(ROOT, ".local")
LOGS = os.path.join(LOCAL, "logs")
PIDS = os.path.join(LOCAL, "run")
MONGO_DATA = os.path.join(LOCAL, "data", "mongo")
SECRETS = os.path.join(LOCAL, "secrets.env")
PYTHON = sys.executable

AMQP_HOST, AMQP_PORT, MANAGEMENT_PORT = "127.0.0.1", 5672, 15672
MONGO_HOST = "127.0.0.1"
MONGO_PORT = int(os.environ.get("ALONGSIDE_MONGO_PORT", "27017"))
MONGODB_URI = (f"mongodb://{MONGO_HOST}:{MONGO_PORT}/"
               "?retryWrites=false&directConnection=true")
SMTP_HOST = "127.0.0.1"
SMTP_PORT = int(os.environ.get("ALONGSIDE_SMTP_PORT", "1025"))
MAIL = os.path.join(LOCAL, "mail")


def say(message):
    print(f"[alongside] {message}", flush=True)


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    raise SystemExit(f"[alongside] {what} did not come up within {seconds} s")


def pid_file(name):
    return os.path.join(PIDS, f"{name}.pid")


def running_pid(name):
    try:
        with open(pid_file(name)) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        # A stale pid file may name a process that reused the pid: check.
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read()
        if any(ours in command for ours in (b"nameko", b"secantus", b"mailcatcher")):
            return pid
    except (OSError, ValueError):
        pass
    return None


def spawn(name, argv, env=None):
    os.makedirs(LOGS, exist_ok=True)
    os.makedirs(PIDS, exist_ok=True)
    log = open(os.path.join(LOGS, f"{name}.log"), "ab")
    process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env or os.environ.copy(),
                               start_new_session=True)
    with open(pid_file(name), "w") as handle:
        handle.write(str(process.pid))
    return process.pid


# -- RabbitMQ -------------------------------------------------------------

def ensure_broker():
    if not port_open(AMQP_HOST, AMQP_PORT):
        if not shutil.which("rabbitmq-server"):
            install_rabbitmq()
        say("starting RabbitMQ (rabbitmq-server -detached)")
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
        wait_for(lambda: port_open(AMQP_HOST, AMQP_PORT), 90, "RabbitMQ on 5672")
        open(os.path.join(PIDS, "rabbitmq.started-by-us"), "w").close()
    # The management API lets tests give each test its own vhost.
    if not port_open(AMQP_HOST, MANAGEMENT_PORT):
        say("enabling rabbitmq_management")
        subprocess.run(["rabbitmq-plugins", "enable", "rabbitmq_management"],
                       check=True, stdout=subprocess.DEVNULL)
        wait_for(lambda: port_open(AMQP_HOST, MANAGEMENT_PORT), 60,
                 "RabbitMQ management on 15672")
    say(f"RabbitMQ answers on {AMQP_HOST}:{AMQP_PORT} (management {MANAGEMENT_PORT})")


def install_rabbitmq():
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(
            "[alongside] RabbitMQ is not installed and this user cannot install it.\n"
            "  Install it and run it on 127.0.0.1:5672 (guest/guest), e.g. as root:\n"
            "    apt-get update && apt-get install -y rabbitmq-server\n"
            "    rabbitmq-server -detached\n"
            "    rabbitmq-plugins enable rabbitmq_management\n"
            "  then run this command again.")
    say("installing RabbitMQ with apt-get (it is missing)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "rabbitmq-server"], check=True, env=env)


# -- MongoDB wire-protocol server ----------------------------------------

def mongo_answers():
    from pymongo import MongoClient
    try:
        client = MongoClient(MONGODB_URI, serverSelectionTimeoutMS=500)
        client.admin.command("ping")
        client.close()
        return True
    except Exception:
        return False


def ensure_datastore():
    if mongo_answers():
        say(f"MongoDB answers on {MONGO_HOST}:{MONGO_PORT}")
        return
    if port_open(MONGO_HOST, MONGO_PORT):
        raise SystemExit(f"[alongside] port {MONGO_PORT} is taken by something "
                         "that is not MongoDB; set ALONGSIDE_MONGO_PORT")
    os.makedirs(MONGO_DATA, exist_ok=True)
    say(f"starting secantusdb on {MONGO_HOST}:{MONGO_PORT} (data in {MONGO_DATA})")
    spawn("mongo", [PYTHON, "-m", "secantus", "--host", MONGO_HOST,
                    "--port", str(MONGO_PORT), "--storage-path", MONGO_DATA,
                    "--sync-on-commit"])
    wait_for(mongo_answers, 60, "secantusdb")


# -- a development mail server ----------------------------------------------

def ensure_mailcatcher():
    """Messaging's email goes to a local SMTP server that keeps it in
    .local/mail (nothing leaves the machine)."""
    if port_open(SMTP_HOST, SMTP_PORT):
        say(f"SMTP answers on {SMTP_HOST}:{SMTP_PORT}")
        return
    say(f"starting the mail catcher on {SMTP_HOST}:{SMTP_PORT} (mail kept in {MAIL})")
    spawn("mail", [PYTHON, "infra/local/mailcatcher.py", "--host", SMTP_HOST,
                   "--port", str(SMTP_PORT), "--folder", MAIL])
    wait_for(lambda: port_open(SMTP_HOST, SMTP_PORT), 20, "the mail catcher")


# -- services -------------------------------------------------------------

def services():
    """(name, class, http address) of every service folder with a config."""
    from shared.config import load_service_config
    found = []
    for name in sorted(os.listdir(os.path.join(ROOT, "services"))):
        folder = os.path.join(ROOT, "services", name)
        source = os.path.join(folder, "service.py")
        if not (os.path.isfile(source) and os.path.isfile(os.path.join(folder, "config.yaml"))):
            continue
        with open(source) as handle:
            match = re.search(r"^class (\w+)\([^)]*\bServiceBase\)", handle.read(), re.M)
        if match:
            address = load_service_config(name)["WEB_SERVER_ADDRESS"]
            found.append((name, match.group(1), address))
    return found


def ready(address):
    try:
        with urllib.request.urlopen(f"http://{address}/health/ready", timeout=2) as answer:
            return answer.status == 200
    except Exception:
        return False


def local_secrets():
    """This machine's secrets: made once, kept in .local/secrets.env
    (git-ignored, readable by you only); the environment wins over them."""
    import secrets
    wanted = {"GATEWAY_JWT_SECRET": lambda: secrets.token_urlsafe(48),
              "ALONGSIDE_MASTER_KEY": lambda: secrets.token_urlsafe(48),
              "ALONGSIDE_ADMIN_EMAIL": lambda: "admin@alongside.local",
              "ALONGSIDE_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18)}
    values = {}
    if os.path.exists(SECRETS):
        with open(SECRETS) as handle:
            for line in handle:
                if "=" in line and not line.startswith("#"):
                    key, _, value = line.strip().partition("=")
                    values[key] = value
    missing = {k: make() for k, make in wanted.items() if k not in values}
    if missing:
        os.makedirs(LOCAL, exist_ok=True)
        fresh = not os.path.exists(SECRETS)
        descriptor = os.open(SECRETS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as handle:
            if fresh:
                handle.write("# Made by make run for this machine only. Never commit.\n")
            handle.writelines(f"{k}={v}\n" for k, v in missing.items())
        values.update(missing)
        say(f"added {', '.join(missing)} to {SECRETS}")
    values.update({k: os.environ[k] for k in values if k in os.environ})
    return values


def start_services():
    env = dict(os.environ, PYTHONPATH=ROOT, MONGODB_URI=MONGODB_URI,
               SMTP_HOST=SMTP_HOST, SMTP_PORT=str(SMTP_PORT),
               RABBITMQ_MANAGEMENT_URL=f"http://guest:guest@{AMQP_HOST}:{MANAGEMENT_PORT}",
               PYTHONWARNINGS="ignore", **local_secrets())
    for name, cls, address in services():
        if running_pid(name):
            say(f"{name} already running (pid {running_pid(name)})")
            continue
        spawn(name, [os.path.join(os.path.dirname(PYTHON), "nameko"), "run",
                     "--config", f"services/{name}/config.yaml",
                     f"services.{name}.service:{cls}"], env)
    for name, _, address in services():
        try:
            wait_for(lambda: ready(address) or not running_pid(name), 60, name)
        except SystemExit:
            pass
        if not ready(address):
            tail = open(os.path.join(LOGS, f"{name}.log")).read()[-2000:]
            raise SystemExit(f"[alongside] {name} is not ready; its log ends:\n{tail}")


def status():
    rows = [("rabbitmq", "up" if port_open(AMQP_HOST, AMQP_PORT) else "down",
             f"amqp://{AMQP_HOST}:{AMQP_PORT}  http://{AMQP_HOST}:{MANAGEMENT_PORT}")]
    rows.append(("mongo", "up" if mongo_answers() else "down", MONGODB_URI))
    rows.append(("mail", "up" if port_open(SMTP_HOST, SMTP_PORT) else "down",
                 f"smtp://{SMTP_HOST}:{SMTP_PORT}  messages in {MAIL}"))
    for name, _, address in services():
        pid = running_pid(name)
        state = ("ready" if ready(address) else "starting") if pid else "stopped"
        rows.append((name, state + (f" pid {pid}" if pid else ""),
                     f"http://{address}/health/ready  /metrics"))
    for row in rows:
        print(f"  {row[0]:<12} {row[1]:<18} {row[2]}")
    print(f"  logs: {LOGS}")


def up():
    os.makedirs(PIDS, exist_ok=True)
    ensure_broker()
    ensure_datastore()
    ensure_mailcatcher()
    start_services()
    say("all services ready:")
    status()
    say(f"API: http://127.0.0.1:8000/api/v1/docs  (national admin login: {SECRETS})")


def stop_pid(name):
    pid = running_pid(name)
    if not pid:
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and running_pid(name):
        time.sleep(0.2)
    if running_pid(name):
        os.killpg(pid, signal.SIGKILL)
    os.remove(pid_file(name))
    say(f"stopped {name} (pid {pid})")


def down():
    for name, _, _ in services():
        stop_pid(name)
    stop_pid("mongo")
    stop_pid("mail")
    marker = os.path.join(PIDS, "rabbitmq.started-by-us")
    if os.path.exists(marker):
        subprocess.run(["rabbitmqctl", "stop"], check=False)
        os.remove(marker)
        say("stopped RabbitMQ (this command had started it)")


def main(argv):
    commands = {"up": up, "down": down, "status": status, "broker": ensure_broker}
    if len(argv) != 1 or argv[0] not in commands:
        raise SystemExit(f"usage: localctl.py {{{'|'.join(commands)}}}")
    os.makedirs(PIDS, exist_ok=True)
    commands[argv[0]]()


if __name__ == "__main__":
    main(sys.argv[1:])
