"""Service configuration: YAML with ``${VAR:default}`` substitution.

The same parser nameko's ``nameko run --config`` uses, so a config file means
the same thing under ``nameko run``, in tests and in scripts: what differs per
place (this machine, compose, k8s) comes from the environment alone.
"""
import os

import yaml
from nameko.cli.main import setup_yaml_parser

setup_yaml_parser()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def service_config_path(service_name):
    return os.path.join(ROOT, "services", service_name, "config.yaml")


def load_config(path):
    with open(path) as config_file:
        return yaml.safe_load(config_file)


def load_service_config(service_name, **overrides):
    config = load_config(service_config_path(service_name))
    config.update(overrides)
    return config
