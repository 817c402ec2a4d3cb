"""Config parsing: defaults, file syntax, precedence and one-line errors."""
from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from kong_py.config import DEFAULTS, Config, ConfigError, Listen, load_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.conf"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = load_config(env={})
    assert c.prefix == tmp_path / "servroot"
    assert c.prefix.is_absolute()
    assert c.proxy_listen == Listen("0.0.0.0", 8000)
    assert c.admin_listen == Listen("127.0.0.1", 8001)
    assert c.database == "sqlite"
    assert c.pg_dsn == "postgresql://127.0.0.1:5432/kong"
    assert c.log_level == "info" and c.logging_level == logging.INFO
    assert c.plugins == ("bundled",)
    assert c.db_update_frequency == 5.0 and isinstance(c.db_update_frequency, float)
    assert c.workers == 1
    assert c.graceful_timeout == 10.0
    assert c.upstream_keepalive_idle_timeout == 60
    assert c.retry_body_limit == 1048576
    assert c.upstream_target_header == "X-Kong-Upstream-Target"
    assert c.access_log is None
    assert c.db_path == tmp_path / "servroot" / "gateway.db"
    assert c.pid_path == tmp_path / "servroot" / "gateway.pid"
    assert c.log_dir == tmp_path / "servroot" / "logs"


def test_config_is_frozen() -> None:
    c = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.workers = 2  # type: ignore[misc]


def test_template_documents_every_key_with_its_default(tmp_path: Path) -> None:
    """Uncommenting every setting in conf/gateway.conf must give the built-in defaults."""
    text = (REPO / "conf" / "gateway.conf").read_text()
    keys = re.findall(r"^#(\w+) = ", text, flags=re.M)
    assert sorted(keys) == sorted(DEFAULTS) == sorted(f.name for f in dataclasses.fields(Config))
    uncommented = re.sub(r"^#(\w+ = )", r"\1", text, flags=re.M)
    assert load_config(write(tmp_path, uncommented), env={}) == load_config(env={})
    # as shipped (all commented out) it is valid too
    assert load_config(REPO / "conf" / "gateway.conf", env={}) == load_config(env={})


def test_file_comments_and_quotes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a comment\n"
        "\n"
        "   # indented comment\n"
        "workers = 4   # trailing comment\n"
        "log_level=debug\n"
        "proxy_listen = '127.0.0.1:9000'  # quoted\n"
        'pg_dsn = "postgresql://u:p#w@db/kong" # quote keeps the #\n'
        "upstream_target_header = off\n"
        "plugins = bundled, my-plugin ,bundled\n"
        "prefix = data\n"
        "access_log = logs/access.log\n"
        "database = postgres\n",
    )
    c = load_config(path, env={})
    assert c.workers == 4
    assert c.log_level == "debug" and c.logging_level == logging.DEBUG
    assert c.proxy_listen == Listen("127.0.0.1", 9000)
    assert c.pg_dsn == "postgresql://u:p#w@db/kong"
    assert c.upstream_target_header is None
    assert c.plugins == ("bundled", "my-plugin")
    assert c.prefix == Path.cwd() / "data"
    assert c.access_log == Path.cwd() / "data" / "logs" / "access.log"
    assert c.database == "postgres"


def test_escaped_hash(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, r"pg_dsn = a\#b # comment" + "\n"), env={})
    assert c.pg_dsn == "a#b"


def test_plugins_off_means_none() -> None:
    assert load_config(env={}, plugins="off").plugins == ()


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 4\nlog_level = warn\n")
    c = load_config(path, env={"GATEWAY_WORKERS": "8", "GATEWAY_UNRELATED": "x"})
    assert c.workers == 8
    assert c.log_level == "warn"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_LISTEN", "127.0.0.1:9101")
    assert load_config().admin_listen == Listen("127.0.0.1", 9101)


def test_keyword_overrides_env(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 4\n")
    c = load_config(path, env={"GATEWAY_WORKERS": "8"}, workers=16, proxy_listen=Listen("::1", 9000))
    assert c.workers == 16
    assert c.proxy_listen == Listen("::1", 9000)


def test_env_prefix_is_resolved_before_access_log() -> None:
    c = load_config(env={"GATEWAY_PREFIX": "/srv/gw"}, access_log="access.log")
    assert c.access_log == Path("/srv/gw/access.log")
    assert load_config(env={}, access_log="/var/log/gw.log").access_log == Path("/var/log/gw.log")


def test_conf_values_round_trip(tmp_path: Path) -> None:
    c = load_config(env={}, prefix=tmp_path, plugins="off", access_log="a.log", upstream_target_header="off")
    env = {f"GATEWAY_{k.upper()}": v for k, v in c.conf_values().items()}
    assert load_config(env=env) == c


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.0.0.0:8000", Listen("0.0.0.0", 8000)),
        ("localhost:80", Listen("localhost", 80)),
        ("[::1]:8000", Listen("::1", 8000)),
        ("[::]:8443", Listen("::", 8443)),
        ("[2001:db8::1]:65535", Listen("2001:db8::1", 65535)),
    ],
)
def test_listen_parsing(raw: str, expected: Listen) -> None:
    assert load_config(env={}, proxy_listen=raw).proxy_listen == expected


def test_listen_helpers() -> None:
    assert str(Listen("::1", 8000)) == "[::1]:8000"
    assert str(Listen("0.0.0.0", 8000)) == "0.0.0.0:8000"
    assert Listen("0.0.0.0", 1).connect_host == "127.0.0.1"
    assert Listen("::", 1).connect_host == "::1"
    assert Listen("10.0.0.1", 1).connect_host == "10.0.0.1"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("proxy_listen", "abc"),
        ("proxy_listen", "127.0.0.1"),
        ("proxy_listen", "::1:8000"),
        ("proxy_listen", "[nothost]:8000"),
        ("proxy_listen", "127.0.0.1:0"),
        ("proxy_listen", "127.0.0.1:70000"),
        ("admin_listen", "127.0.0.1:x"),
        ("admin_listen", "0.0.0.0:8000"),  # collides with proxy_listen
        ("database", "mysql"),
        ("pg_dsn", ""),
        ("log_level", "verbose"),
        ("plugins", ""),
        ("plugins", "off,bundled"),
        ("plugins", "bad name"),
        ("db_update_frequency", "0"),
        ("db_update_frequency", "-1"),
        ("db_update_frequency", "soon"),
        ("db_update_frequency", "nan"),
        ("workers", "0"),
        ("workers", "1.5"),
        ("graceful_timeout", "-1"),
        ("upstream_keepalive_idle_timeout", "0"),
        ("retry_body_limit", "1MB"),
        ("upstream_target_header", "Bad Header"),
        ("prefix", ""),
        ("access_log", ""),
    ],
)
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={f"GATEWAY_{key.upper()}": value})
    message = str(info.value)
    assert f"invalid value for {key!r}" in message
    assert "\n" not in message
    assert info.value.key == key


def test_bad_value_message_format() -> None:
    with pytest.raises(ConfigError, match=r"^invalid value for 'proxy_listen': expected host:port, got 'abc'$"):
        load_config(env={}, proxy_listen="abc")


def test_bad_value_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid value for 'workers'"):
        load_config(write(tmp_path, "workers = many\n"), env={})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration key 'wrokers' at .*gateway.conf:2"):
        load_config(write(tmp_path, "# ok\nwrokers = 2\n"), env={})


def test_unknown_keyword_override() -> None:
    with pytest.raises(ConfigError, match="unknown configuration key 'nope'"):
        load_config(env={}, nope=1)


@pytest.mark.parametrize("line", ["just words", "= value", "pg_dsn = 'unterminated", "pg_dsn = 'a' b"])
def test_syntax_errors(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError, match=r"gateway.conf:1"):
        load_config(write(tmp_path, line + "\n"), env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "absent.conf", env={})


def test_unknown_environment_variables_are_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    c = load_config(env={"GATEWAY_WROKERS": "4", "GATEWAY_ADMN_LISTEN": "127.0.0.1:1", "GATEWAY_ZZZ": "1",
                         "GATEWAY_WORKERS": "2", "OTHER_WROKERS": "9"})
    assert c.workers == 2
    assert capsys.readouterr().err.splitlines() == [
        "warning: ignoring unknown environment variable GATEWAY_ADMN_LISTEN (did you mean GATEWAY_ADMIN_LISTEN?)",
        "warning: ignoring unknown environment variable GATEWAY_WROKERS (did you mean GATEWAY_WORKERS?)",
        "warning: ignoring unknown environment variable GATEWAY_ZZZ",
    ]
    load_config(env={"GATEWAY_WORKERS": "2"})
    assert capsys.readouterr().err == ""


def test_admin_protection_settings(tmp_path: Path) -> None:
    c = load_config(env={}, admin_allowed_hosts="Admin.Example.com, [::1]:9000,*", admin_token="t" * 16,
                    admin_ssl_cert="c.pem", admin_ssl_cert_key=str(tmp_path / "k.pem"),
                    admin_client_max_body_size=1024, upstream_deny_addresses="admin_listen, 10.0.0.1 ,fe80::/10")
    assert c.admin_allowed_hosts == ("admin.example.com", "[::1]:9000", "*")
    assert c.admin_token == "t" * 16 and "t" * 16 not in repr(c)
    assert c.admin_ssl_cert == Path.cwd() / "c.pem" and c.admin_ssl_cert_key == tmp_path / "k.pem"
    assert c.admin_tls and c.admin_client_max_body_size == 1024
    assert c.upstream_deny_addresses == ("admin_listen", "10.0.0.1/32", "fe80::/10")
    env = {f"GATEWAY_{k.upper()}": v for k, v in c.conf_values().items()}
    assert load_config(env=env) == c
    defaults = load_config(env={})
    assert defaults.admin_token is None and not defaults.admin_tls and defaults.admin_allowed_hosts == ()
    assert defaults.admin_client_max_body_size == 10 * 1024 * 1024
    assert defaults.upstream_deny_addresses == ("admin_listen", "169.254.0.0/16", "fe80::/10")


@pytest.mark.parametrize(("key", "value"), [
    ("admin_allowed_hosts", "a b"), ("admin_allowed_hosts", "host:99999"), ("admin_allowed_hosts", "[nothost]:1"),
    ("admin_allowed_hosts", ","), ("admin_token", "short"), ("admin_token", "a token with spaces in it"),
    ("admin_client_max_body_size", "0"), ("admin_client_max_body_size", "10m"),
    ("upstream_deny_addresses", "10.0.0.0/40"), ("admin_ssl_cert", ""),
])
def test_bad_admin_protection_values(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={f"GATEWAY_{key.upper()}": value})
    assert f"invalid value for {key!r}" in str(info.value) or "admin_ssl_cert" in str(info.value)
    assert "\n" not in str(info.value)
    if key == "admin_token":
        assert value not in str(info.value)
