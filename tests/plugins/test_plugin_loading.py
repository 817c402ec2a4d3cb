"""Loading plugins: third-party entry points, the ``plugins`` allow-list, malformed plugins."""
from __future__ import annotations

import socket

import orjson
import pytest

from kong_py.config import load_config
from kong_py.hookspecs import hookimpl
from kong_py.plugin_manager import PluginLoadError, PluginManager
from kong_py.server import RunningGateway

PLUGIN_SOURCE = '''
from kong_py.hookspecs import hookimpl
from pydantic import BaseModel, Field


class Config(BaseModel):
    greeting: str = Field("hi", description="What to answer with.")


class Handler:
    name = "{name}"
    PRIORITY = 1000
    VERSION = "0.0.1"
    Config = Config

    @hookimpl
    def access(self, ctx, conf):
        ctx.add_response_header("X-Test-Plugin", conf.greeting)
        if ctx.request.get_query_arg("stop") is not None:
            ctx.exit(418, {{"greeting": conf.greeting}})


plugin = Handler()
'''


async def test_entry_point_plugin_is_loaded_when_allow_listed(start_gateway, upstreams, install_plugin):
    install_plugin("my-test-plugin", PLUGIN_SOURCE)
    gateway = await start_gateway(plugins="bundled,my-test-plugin")
    _, enabled = await gateway.admin("GET", "/plugins/enabled")
    assert "my-test-plugin" in enabled["enabled_plugins"]
    assert "request-termination" in enabled["enabled_plugins"]  # "bundled" still loads the first-party ones
    status, schema = await gateway.admin("GET", "/schemas/plugins/my-test-plugin")
    assert status == 200 and schema["fields"][0]["config"]["properties"]["greeting"]["default"] == "hi"

    backend = await upstreams("b")
    await gateway.admin("POST", "/services", {"name": "s", "url": f"http://{backend.address}"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    status, _ = await gateway.admin("POST", "/plugins", {"name": "my-test-plugin", "config.greeting": "hello"},
                                    encoding="form")
    assert status == 201
    status, headers, _ = await gateway.proxy("GET", "/api")
    assert status == 200 and headers["X-Test-Plugin"] == "hello"  # its access hook ran
    status, headers, body = await gateway.proxy("GET", "/api?stop")
    assert (status, orjson.loads(body)) == (418, {"greeting": "hello"})
    assert headers["X-Test-Plugin"] == "hello"
    assert backend.hits == 1


async def test_entry_point_plugin_is_not_loaded_without_allow_list(start_gateway, install_plugin):
    install_plugin("my-test-plugin", PLUGIN_SOURCE)
    gateway = await start_gateway()  # plugins = bundled
    _, enabled = await gateway.admin("GET", "/plugins/enabled")
    assert "my-test-plugin" not in enabled["enabled_plugins"]
    status, body = await gateway.admin("POST", "/plugins", {"name": "my-test-plugin"})
    assert status == 400 and "not enabled" in body["fields"]["name"]
    assert (await gateway.admin("GET", "/schemas/plugins/my-test-plugin"))[0] == 404


def test_allow_list_without_bundled_loads_only_named_plugins(install_plugin):
    install_plugin("my-test-plugin", PLUGIN_SOURCE)
    manager = PluginManager(("my-test-plugin",))
    assert set(manager.handlers) == {"my-test-plugin"}


@pytest.mark.parametrize("target", ["Handler", "plugin"])
def test_entry_point_may_name_a_class_or_an_instance(install_plugin, target):
    install_plugin("my-test-plugin", PLUGIN_SOURCE, target=target)
    manager = PluginManager(("bundled", "my-test-plugin"))
    assert manager.handlers["my-test-plugin"].VERSION == "0.0.1"
    assert manager.validate_config("my-test-plugin", {}) == {"greeting": "hi"}


def test_allow_list_can_name_bundled_plugins_one_by_one():
    manager = PluginManager(("load-balancing", "request-termination"))
    assert set(manager.handlers) == {"load-balancing", "request-termination"}


def test_enabled_but_not_installed_is_a_clear_error():
    with pytest.raises(PluginLoadError, match="plugin 'not-installed' is enabled but not installed"):
        PluginManager(("bundled", "not-installed"))


def test_broken_third_party_package_is_a_clear_error(install_plugin):
    install_plugin("broken-plugin", "raise RuntimeError('boom')\n")
    PluginManager(("bundled",))  # not allow-listed: never imported
    with pytest.raises(PluginLoadError, match="plugin 'broken-plugin' failed to load: boom"):
        PluginManager(("bundled", "broken-plugin"))


MISSPELLED = '''
from kong_py.hookspecs import hookimpl


class Handler:
    name = "{name}"
    PRIORITY = 10
    VERSION = "0.0.1"

    @hookimpl
    def acces(self, ctx, conf):
        pass
'''


def test_misspelled_hook_name_fails_to_load(install_plugin):
    install_plugin("typo-plugin", MISSPELLED)
    with pytest.raises(PluginLoadError) as info:
        PluginManager(("bundled", "typo-plugin"))
    message = str(info.value)
    assert "typo-plugin" in message and "acces" in message


async def test_misspelled_hook_name_stops_the_gateway_from_starting(start_gateway, install_plugin):
    install_plugin("typo-plugin", MISSPELLED)
    with pytest.raises(PluginLoadError, match="acces"):
        await start_gateway(plugins="bundled,typo-plugin")


def test_misspelled_hook_leaves_the_manager_usable():
    class Typo:
        name = "typo"
        PRIORITY = 1

        @hookimpl
        def header_filtre(self, ctx, conf):
            pass

    manager = PluginManager(("bundled",))
    with pytest.raises(PluginLoadError, match="header_filtre"):
        manager.add(Typo())
    assert "typo" not in manager.handlers
    manager.chain([("request-termination", manager.parsed_config("request-termination", None))])


@pytest.mark.parametrize(("attrs", "error"), [
    ({"PRIORITY": 1}, "has no 'name'"),
    ({"name": "x"}, "has no integer PRIORITY"),
    ({"name": "x", "PRIORITY": "high"}, "has no integer PRIORITY"),
    ({"name": "x", "PRIORITY": 1, "Config": dict}, "Config must be a pydantic model"),
])
def test_malformed_handler_is_refused(attrs, error):
    handler = type("Handler", (), attrs)()
    with pytest.raises(PluginLoadError, match=error):
        PluginManager(("bundled",)).add(handler)


def test_hook_with_unknown_argument_is_a_plugin_load_error():
    class WrongArgs:
        name = "wrong-args"
        PRIORITY = 1

        @hookimpl
        def access(self, context, conf):  # 'context' is not an argument of access
            pass

    with pytest.raises(PluginLoadError, match="wrong-args"):
        PluginManager(("bundled",)).add(WrongArgs())



def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_failed_start_releases_the_ports(tmp_path):
    proxy_port, admin_port = _free_port(), _free_port()
    config = load_config(env={}, prefix=str(tmp_path / "gw"), plugins="bundled,not-installed",
                         proxy_listen=f"127.0.0.1:{proxy_port}", admin_listen=f"127.0.0.1:{admin_port}")
    running = RunningGateway(config)
    with pytest.raises(PluginLoadError):
        await running.start()
    for port in (proxy_port, admin_port):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # EADDRINUSE while the gateway still holds it


@pytest.mark.parametrize("plugins", ["off", "request-termination"])
async def test_allow_list_without_load_balancing_still_proxies(start_gateway, upstreams, plugins):
    gateway = await start_gateway(plugins=plugins)
    backend = await upstreams("b")
    assert (await gateway.admin("POST", "/services", {"name": "s", "url": f"http://{backend.address}"}))[0] == 201
    assert (await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]}))[0] == 201
    assert (await gateway.proxy("GET", "/api"))[0] == 200
