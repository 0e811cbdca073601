"""A workload's environment is an allowlist: the agent's secrets never reach it.

Real process and hook workloads print their whole environment; the agent (this test
process) holds secrets that must be absent, and allowlisted, `pass_env` and config `env`
variables that must be present.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.drivers import Built
from support.waiting import wait_until

from harmony.actors.drivers import DriverState
from harmony.actors.drivers.base import inherited_env
from harmony.config import ConfigError, HooksDriverConfig, ProcessDriverConfig, parse_config

Build = Callable[..., Built]
SECRETS = {"NATS_PASSWORD": "hunter2", "HARMONY_TEST_SECRET": "s3cret", "AWS_SECRET_KEY": "k"}
DUMP = "import json, os, sys, time; json.dump(dict(os.environ), open(sys.argv[1], 'w')); "


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's environment: secrets, an allowlisted locale, one variable to pass."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("OPERATOR_CHOSEN", "passed")
    monkeypatch.setenv("NOT_CHOSEN", "kept-out")


def read_env(path: Path) -> dict[str, str]:
    wait_until(lambda: path.exists() and path.read_text().endswith("}"), 10, f"{path} written")
    env: dict[str, str] = json.loads(path.read_text())
    return env


def assert_allowlisted(env: dict[str, str]) -> None:
    for name in [*SECRETS, "NOT_CHOSEN"]:
        assert name not in env, f"{name} leaked to the workload: {sorted(env)}"
    assert env["LC_TIME"] == "C" and env["TZ"] == "UTC" and "PATH" in env
    assert env["OPERATOR_CHOSEN"] == "passed"  # pass_env
    assert env["EXTRA"] == "x1"  # the config's env table
    assert env["HARMONY_WORKLOAD"] == "w1" and env["HARMONY_FENCING_TOKEN"] == "7"


@pytest.mark.usefixtures("agent_env")
def test_process_workload_gets_the_allowlist_only(build: Build, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    cfg = ProcessDriverConfig(
        command=[sys.executable, "-c", DUMP + "time.sleep(60)", str(out)],
        env={"EXTRA": "x1"},
        pass_env=["OPERATOR_CHOSEN"],
    )
    b = build(cfg)
    b.driver.start(7)
    env = read_env(out)
    assert_allowlisted(env)
    b.driver.stop("test over")
    assert b.driver.state is DriverState.STOPPED


@pytest.mark.usefixtures("agent_env")
def test_hooks_get_the_allowlist_only(build: Build, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    start = f"{sys.executable} -c {json.dumps(DUMP)} {out}"
    cfg = HooksDriverConfig(
        start=start, stop="true", env={"EXTRA": "x1"}, pass_env=["OPERATOR_CHOSEN"]
    )
    b = build(cfg)
    b.driver.start(7)
    env = read_env(out)
    assert_allowlisted(env)
    assert env["HARMONY_HOOK"] == "start"
    wait_until(lambda: b.driver.state is DriverState.RUNNING, 10, "start hook done")
    b.driver.stop("test over")


def test_inherited_env_is_the_documented_allowlist() -> None:
    agent = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "LANG": "C", "SECRET": "x", "A": "1"}
    assert inherited_env(agent) == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "LANG": "C"}
    assert inherited_env(agent, ["A"])["A"] == "1"


def test_pass_env_names_are_checked(tmp_path: Path) -> None:
    toml = """
mesh = "m"
site = "a"
[[workloads]]
name = "w"
topology = { kind = "failover", primary = "a" }
strategy = "split-brain-allowed"
driver = { kind = "process", command = ["true"], pass_env = ["OK", "BAD NAME"] }
"""
    with pytest.raises(ConfigError) as err:
        parse_config(toml, tmp_path / "site.toml")
    assert err.value.field == "workloads[0].driver.pass_env[1]"
    assert "'BAD NAME' is not a variable name" in str(err.value)
