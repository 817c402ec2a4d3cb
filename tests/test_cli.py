"""The ``gateway`` CLI, exercised through ``bin/gateway`` as a user would."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GATEWAY = REPO / "bin" / "gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no stray GATEWAY_* settings, unused loopback ports."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    clean.update(
        GATEWAY_PREFIX=str(tmp_path / "servroot"),
        GATEWAY_PROXY_LISTEN=f"127.0.0.1:{free_port()}",
        GATEWAY_ADMIN_LISTEN=f"127.0.0.1:{free_port()}",
    )
    return clean


def gateway(*args: str, env: dict[str, str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATEWAY), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_version(env: dict[str, str], tmp_path: Path) -> None:
    r = gateway("version", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("kong_py ")
    assert len(r.stdout.split()) == 2


def test_check_defaults_and_template(env: dict[str, str], tmp_path: Path) -> None:
    r = gateway("check", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration at (built-in defaults) is valid"

    template = str(REPO / "conf" / "gateway.conf")
    for args in (["check", template], ["check", "-c", template]):
        r = gateway(*args, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"configuration at {template} is valid"


def test_check_bad_file(env: dict[str, str], tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("proxy_listen = abc\n")
    del env["GATEWAY_PROXY_LISTEN"]  # the environment would win over the file
    r = gateway("check", str(conf), env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == "Error: invalid value for 'proxy_listen': expected host:port, got 'abc'\n"
    assert "Traceback" not in r.stdout + r.stderr


def test_check_bad_env(env: dict[str, str], tmp_path: Path) -> None:
    env["GATEWAY_WORKERS"] = "0"
    r = gateway("check", env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: invalid value for 'workers'")
    assert r.stderr.count("\n") == 1


def test_python_dash_m(env: dict[str, str], tmp_path: Path) -> None:
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run(
        [sys.executable, "-m", "kong_py.cli", "version"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("kong_py ")


def test_no_command_prints_usage(env: dict[str, str], tmp_path: Path) -> None:
    r = gateway(env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert "usage:" in r.stderr


def test_stop_when_not_running(env: dict[str, str], tmp_path: Path) -> None:
    r = gateway("stop", env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: gateway is not running")
    assert "Traceback" not in r.stderr


def test_stop_removes_stale_pid_file(env: dict[str, str], tmp_path: Path) -> None:
    pid_file = Path(env["GATEWAY_PREFIX"]) / "gateway.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{dead_pid()}\n")
    r = gateway("stop", env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert "stale pid file" in r.stderr
    assert not pid_file.exists()


def test_start_refuses_when_pid_file_is_live(env: dict[str, str], tmp_path: Path) -> None:
    """The running-check happens before the server is imported, so no server is needed."""
    pid_file = Path(env["GATEWAY_PREFIX"]) / "gateway.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n")  # this test process is certainly alive
    for args in (["start"], ["start", "-d"]):
        r = gateway(*args, env=env, cwd=tmp_path)
        assert r.returncode == 1
        assert r.stderr == f"Error: gateway is already running (pid {os.getpid()}, pid file {pid_file})\n"
    assert pid_file.read_text() == f"{os.getpid()}\n"


def test_health_against_nothing(env: dict[str, str], tmp_path: Path) -> None:
    r = gateway("health", env=env, cwd=tmp_path, timeout=20)
    assert r.returncode != 0
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("admin: ") and "unreachable" in lines[0]
    assert lines[1].startswith("proxy: ") and "unreachable" in lines[1]


def test_start_health_stop(env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("kong_py.server")
    pid_file = Path(env["GATEWAY_PREFIX"]) / "gateway.pid"
    try:
        r = gateway("start", "-d", env=env, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Gateway started" in r.stdout
        assert pid_file.exists()

        r = gateway("health", env=env, cwd=tmp_path, timeout=20)
        assert r.returncode == 0, r.stdout + r.stderr

        r = gateway("stop", env=env, cwd=tmp_path, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Gateway stopped" in r.stdout
        assert not pid_file.exists()

        r = gateway("health", env=env, cwd=tmp_path, timeout=20)
        assert r.returncode != 0
    finally:  # never leak a daemon, whatever failed above
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def test_stop_refuses_a_pid_that_is_not_a_gateway(env: dict[str, str], tmp_path: Path) -> None:
    """A stale pid file whose pid was reused by another program: that program lives on."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = Path(env["GATEWAY_PREFIX"]) / "gateway.pid"
        pid_file.parent.mkdir(parents=True)
        pid_file.write_text(f"{other.pid}\n")
        r = gateway("stop", env=env, cwd=tmp_path)
        assert r.returncode == 1
        assert r.stderr.startswith(f"Error: pid {other.pid} in {pid_file} is not a gateway")
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert other.poll() is None  # not signalled
        assert pid_file.exists()
    finally:
        other.kill()
        other.wait()


def test_check_loads_the_plugin_list_as_start_does(env: dict[str, str], tmp_path: Path) -> None:
    env["GATEWAY_PLUGINS"] = "bundled,not-installed"
    check = gateway("check", env=env, cwd=tmp_path)
    assert check.returncode == 1
    assert check.stderr == "Error: plugin 'not-installed' is enabled but not installed\n"
    start = gateway("start", env=env, cwd=tmp_path, timeout=60)
    assert start.returncode == 1
    assert start.stderr.strip().splitlines()[-1] == check.stderr.strip()


def test_check_loads_the_admin_certificate(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    env["GATEWAY_ADMIN_SSL_CERT"] = str(tmp_path / "bad.pem")
    env["GATEWAY_ADMIN_SSL_CERT_KEY"] = str(tmp_path / "missing.key")
    r = gateway("check", env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: invalid value for 'admin_ssl_cert': cannot load")
    assert r.stderr.count("\n") == 1


def test_a_misspelt_environment_variable_is_named(env: dict[str, str], tmp_path: Path) -> None:
    env["GATEWAY_ADMIN_LISTN"] = "127.0.0.1:1"
    r = gateway("check", env=env, cwd=tmp_path)
    assert r.returncode == 0
    assert r.stderr == ("warning: ignoring unknown environment variable GATEWAY_ADMIN_LISTN "
                        "(did you mean GATEWAY_ADMIN_LISTEN?)\n")
