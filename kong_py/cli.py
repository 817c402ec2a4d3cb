"""``gateway`` command line: start/stop/health/check/migrations/version, and mock-llm.

User mistakes (bad configuration, not running, already running) end with one
``Error: ...`` line on stderr and exit status 1, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kong_py.config import ENV_PREFIX, Config, ConfigError, Listen, load_config
from kong_py.node import pid_alive

START_TIMEOUT = 15.0  # seconds `start -d` waits for the health check to pass
_POLL = 0.2


class UserError(Exception):
    """An expected failure reported as one ``Error:`` line (exit status 1)."""


# -- helpers ----------------------------------------------------------------------


def _read_pid(pid_path: Path) -> int | None:
    """The pid in ``pid_path``, or None when missing or unreadable."""
    try:
        return int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def _running_pid(config: Config) -> int | None:
    pid = _read_pid(config.pid_path)
    return pid if pid is not None and pid_alive(pid) else None


def _cmdline(pid: int) -> list[str] | None:
    """The arguments ``pid`` runs with, or None when the system does not tell (no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no /proc here, or the process just ended
        return None
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def _is_gateway(args: list[str]) -> bool:
    """``python -m kong_py.cli start`` (bin/gateway, a daemon) or the ``gateway`` console script."""
    return "kong_py.cli" in args or any(Path(arg).name == "gateway" for arg in args[:2])


def _remove_pid_file(config: Config, pid: int) -> None:
    """Remove the pid file only if it still names ``pid`` (never someone else's)."""
    if _read_pid(config.pid_path) == pid:
        config.pid_path.unlink(missing_ok=True)


def _url(listen: Listen, path: str, scheme: str = "http") -> str:
    host = listen.connect_host
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{listen.port}{path}"


def _port_open(listen: Listen) -> bool:
    """Whether something already accepts TCP connections on ``listen``."""
    try:
        socket.create_connection((listen.connect_host, listen.port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _probe(listen: Listen, path: str, timeout: float, admin: Config | None = None) -> tuple[int | None, str]:
    """GET ``path`` on ``listen``: (status or None, human-readable outcome).

    With ``admin``, the Admin API's settings apply: TLS and the token, when set.
    """
    headers = {"User-Agent": "kong_py-health"}
    conn: http.client.HTTPConnection
    if admin is not None and admin.admin_tls:
        from kong_py.admin.protect import client_tls_context  # lazy: ssl set-up only when needed

        try:
            context = client_tls_context(admin)
        except (OSError, ValueError) as exc:
            return None, f"cannot use admin_ssl_cert ({exc})"
        conn = http.client.HTTPSConnection(listen.connect_host, listen.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(listen.connect_host, listen.port, timeout=timeout)
    if admin is not None and admin.admin_token is not None:
        headers["Kong-Admin-Token"] = admin.admin_token
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, f"{resp.status} {resp.reason}"
    except (OSError, http.client.HTTPException) as exc:
        return None, f"unreachable ({exc or type(exc).__name__})"
    finally:
        conn.close()


def _health(config: Config, timeout: float = 2.0, quiet: bool = False) -> bool:
    """Admin ``/status`` must return 200; the proxy may answer with any status."""
    admin_status, admin_msg = _probe(config.admin_listen, "/status", timeout, admin=config)
    proxy_status, proxy_msg = _probe(config.proxy_listen, "/", timeout)
    if not quiet:
        scheme = "https" if config.admin_tls else "http"
        print(f"admin: {_url(config.admin_listen, '/status', scheme)} -> {admin_msg}")
        print(f"proxy: {_url(config.proxy_listen, '/')} -> {proxy_msg}")
    return admin_status == 200 and proxy_status is not None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# -- commands -------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    config = load_config(args.conf)
    pid = _running_pid(config)
    if pid is not None:
        raise UserError(f"gateway is already running (pid {pid}, pid file {config.pid_path})")
    if args.daemon:
        return _start_daemon(config, args.conf)

    from kong_py.server import serve  # lazy: keeps other commands independent of it

    config.create_prefix()
    config.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    config.pid_path.write_text(f"{os.getpid()}\n")
    try:
        serve(config)
    finally:
        _remove_pid_file(config, os.getpid())
    return 0


def _start_daemon(config: Config, conf_file: str | None) -> int:
    """Spawn a detached foreground ``start`` and wait until it is healthy."""
    for name in ("proxy_listen", "admin_listen"):
        listen: Listen = getattr(config, name)
        if _port_open(listen):
            raise UserError(f"{name} {listen} is already in use by another server")
    config.create_prefix()
    config.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    error_log = config.log_dir / "error.log"
    # Pass every parsed setting explicitly so the child cannot resolve them differently
    # (e.g. a relative prefix) from what was validated here.
    env = dict(os.environ)
    env.update({ENV_PREFIX + k.upper(): v for k, v in config.conf_values().items()})
    cmd = [sys.executable, "-m", "kong_py.cli", "start"]
    if conf_file is not None:
        cmd += ["-c", os.path.abspath(conf_file)]
    with open(error_log, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return _start_failed(error_log, f"gateway exited with status {proc.returncode}")
        if _health(config, timeout=1.0, quiet=True) and proc.poll() is None:
            print("Gateway started")
            return 0
        time.sleep(_POLL)
    proc.terminate()  # don't leave a half-started daemon behind
    try:
        proc.wait(config.graceful_timeout + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _remove_pid_file(config, proc.pid)
    return _start_failed(error_log, f"gateway did not become healthy within {START_TIMEOUT:g}s")


def _start_failed(error_log: Path, reason: str) -> int:
    print(f"--- last lines of {error_log} ---\n{_tail(error_log)}", file=sys.stderr)
    print(f"Error: {reason}", file=sys.stderr)
    return 1


def cmd_stop(args: argparse.Namespace) -> int:
    config = load_config(args.conf)
    pid = _read_pid(config.pid_path)
    if pid is None:
        raise UserError(f"gateway is not running (no pid file at {config.pid_path})")
    if not pid_alive(pid):
        config.pid_path.unlink(missing_ok=True)
        raise UserError(f"gateway is not running (removed stale pid file {config.pid_path})")
    args_of_pid = _cmdline(pid)
    if args_of_pid is not None and not _is_gateway(args_of_pid):
        shown = " ".join(args_of_pid)[:80] or "unknown"
        raise UserError(f"pid {pid} in {config.pid_path} is not a gateway (it runs {shown!r}); not stopping it "
                        "(remove the pid file if no gateway is running)")
    timeout = args.timeout if args.timeout is not None else config.graceful_timeout + 5
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            raise UserError(f"gateway (pid {pid}) did not stop within {timeout:g}s")
        time.sleep(0.1)
    _remove_pid_file(config, pid)
    print("Gateway stopped")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    return 0 if _health(load_config(args.conf)) else 1


def cmd_check(args: argparse.Namespace) -> int:
    """What ``start`` checks before it binds: the settings, the plugin list, the admin TLS files."""
    path = args.file or args.conf
    config = load_config(path)
    from kong_py.admin.protect import check_admin_tls  # lazy: only check needs them
    from kong_py.plugin_manager import PluginLoadError, PluginManager

    try:
        PluginManager(config.plugins)
    except PluginLoadError as exc:
        raise UserError(str(exc)) from None
    check_admin_tls(config)
    print(f"configuration at {path or '(built-in defaults)'} is valid")
    return 0


def cmd_migrations(args: argparse.Namespace) -> int:
    config = load_config(args.conf)
    from kong_py.db.store import open_store  # lazy: written independently

    result = open_store(config).migrate()
    if inspect.isawaitable(result):
        asyncio.run(result)  # type: ignore[arg-type]
    print("migrations up to date")
    return 0


def cmd_mock_llm(args: argparse.Namespace) -> int:
    """A mock LLM provider server in the foreground (docs/mock-llm.md); Ctrl-C stops it."""
    from kong_py.config import _parse_listen
    from kong_py.mock_llm import Behaviour, ControlError, is_loopback, run  # lazy: aiohttp app

    listen = _parse_listen("--listen", args.listen)
    if args.record_limit < 0:
        raise UserError("--record-limit must be >= 0")
    settings = {"latency_ms": args.latency_ms, "chunks": args.chunks, "chunk_delay_ms": args.chunk_delay_ms,
                "words": args.words, "status": args.status, "api_key": args.api_key}
    if args.models:
        settings["models"] = tuple(m.strip() for m in args.models.split(",") if m.strip())
    try:
        behaviour = Behaviour(**{k: v for k, v in settings.items() if v is not None})
    except ControlError as exc:
        raise UserError(str(exc)) from None
    if not is_loopback(listen.host):
        print(f"warning: the mock LLM listens on {listen}, reachable from other machines", file=sys.stderr)
    try:
        run(listen.host, listen.port, behaviour, record_limit=args.record_limit, access_log=not args.quiet)
    except OSError as exc:
        raise UserError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"kong_py {_version()}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kong_py")
    except PackageNotFoundError:
        import kong_py

        return getattr(kong_py, "__version__", "unknown")


# -- argument parsing -------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    conf = argparse.ArgumentParser(add_help=False)
    conf.add_argument("-c", "--conf", metavar="FILE", help="configuration file (default: built-in defaults)")

    parser = argparse.ArgumentParser(prog="gateway", description="kong_py API gateway")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("start", parents=[conf], help="start the gateway")
    p.add_argument("-d", "--daemon", action="store_true", help="run in the background")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", parents=[conf], help="stop a running gateway")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds to wait (default: graceful_timeout + 5)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("health", parents=[conf], help="check that both listeners answer")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("check", parents=[conf], help="validate a configuration file")
    p.add_argument("file", nargs="?", metavar="FILE")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("migrations", help="manage the database schema")
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = msub.add_parser("up", parents=[conf], help="create or update tables")
    up.set_defaults(func=cmd_migrations)

    p = sub.add_parser("mock-llm", help="run a mock LLM provider server (no tokens spent)",
                       description="Imitates the OpenAI, Azure OpenAI, Anthropic, Gemini and Bedrock Converse "
                                   "APIs for trying a configuration; see docs/mock-llm.md.")
    p.add_argument("--listen", default="127.0.0.1:9100", metavar="HOST:PORT",
                   help="where to listen (default: 127.0.0.1:9100; other interfaces only when named here)")
    p.add_argument("--latency-ms", type=float, metavar="N", help="delay before the first byte of every answer")
    p.add_argument("--chunks", type=int, metavar="N", help="content chunks of a streamed answer (default: one a word)")
    p.add_argument("--chunk-delay-ms", type=float, metavar="N", help="delay between two streamed chunks")
    p.add_argument("--words", type=int, metavar="N", help="answer N lorem-ipsum words instead of echoing the prompt")
    p.add_argument("--status", type=int, metavar="CODE", help="answer every request with this error status")
    p.add_argument("--api-key", metavar="KEY", help="refuse requests that do not carry this key (401)")
    p.add_argument("--models", metavar="A,B", help="the models the model lists name")
    p.add_argument("--record-limit", type=int, default=10_000, metavar="N",
                   help="recorded requests kept, the latest (default: 10000; 0: none)")
    p.add_argument("--quiet", action="store_true", help="no line per request (benchmarks)")
    p.set_defaults(func=cmd_mock_llm)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ConfigError, UserError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. unwritable prefix: an environment problem, not a bug
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
