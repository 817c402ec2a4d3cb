"""``gateway mock-llm``: a foreground process that answers, and stops on Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

import openai
import pytest

from support import free_port

REPO = Path(__file__).resolve().parents[2]
GATEWAY = REPO / "bin" / "gateway"


def start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.Popen([str(GATEWAY), "mock-llm", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def wait_listening(proc: subprocess.Popen[str]) -> str:
    """The first line the command prints (it says where it listens)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on http://" in line, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return line


@pytest.fixture
def mock_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = start("--listen", f"127.0.0.1:{port}", "--words", "4", "--chunks", "2", "--chunk-delay-ms", "10")
    try:
        wait_listening(proc)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_cli_answers_and_stops_on_ctrl_c(mock_process: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = mock_process
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x", max_retries=0, timeout=10)
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "lorem ipsum dolor sit"
    stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                            stream=True)
    assert len([c for c in stream if c.choices and c.choices[0].delta.content]) == 2
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__mock/requests", timeout=10) as resp:
        assert json.load(resp)["count"] == 2
    client.close()

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "POST /v1/chat/completions" in out  # one line a request


def test_cli_sigterm_and_quiet() -> None:
    port = free_port()
    proc = start("--listen", f"127.0.0.1:{port}", "--quiet")
    try:
        wait_listening(proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "GET /v1/models" not in out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.parametrize("args, message", [
    (["--listen", "127.0.0.1:abc"], "Error: invalid value for '--listen': expected host:port, got '127.0.0.1:abc'"),
    (["--chunks", "0"], "Error: chunks must be >= 1"),
    (["--status", "200"], "Error: status must be between 400 and 599"),
])
def test_cli_bad_options(args: list[str], message: str) -> None:
    proc = start(*args)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and err.strip() == message and "Traceback" not in err


def test_cli_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start("--listen", f"127.0.0.1:{port}")
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err.startswith(f"Error: cannot listen on 127.0.0.1:{port}:") and "Traceback" not in err


def test_cli_loopback_by_default() -> None:
    """Without --listen it binds 127.0.0.1:9100, never another interface."""
    help_text = subprocess.run([str(GATEWAY), "mock-llm", "--help"], capture_output=True, text=True, timeout=20)
    assert "127.0.0.1:9100" in help_text.stdout
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 9100))
        except OSError:
            pytest.skip("port 9100 is taken here")
    proc = start()
    try:
        assert "http://127.0.0.1:9100" in wait_listening(proc)
        listening = Path("/proc/net/tcp")
        if listening.exists():  # the socket is bound to 127.0.0.1 (0100007F), not 0.0.0.0
            rows = [line.split() for line in listening.read_text().splitlines()[1:]]
            local = {row[1] for row in rows if row[3] == "0A"}
            assert "0100007F:238C" in local and "00000000:238C" not in local
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
