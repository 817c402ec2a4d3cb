"""A plugin hook that raises must not break the proxy's contract with the client."""
from __future__ import annotations

import orjson

FAULTY = '''
from kong_py.hookspecs import hookimpl

SEEN = []


class Handler:
    name = "{name}"
    PRIORITY = 5
    VERSION = "0.0.1"

    @hookimpl
    def access(self, ctx):
        if ctx.request.get_query_arg("fail") is not None:
            raise RuntimeError("plugin bug")

    @hookimpl
    def log(self, ctx):
        SEEN.append(ctx.response.status if ctx.response is not None else None)
'''


async def faulty_gateway(start_gateway, upstreams, install_plugin):
    module = install_plugin("faulty", FAULTY)
    gateway = await start_gateway(plugins="bundled,faulty")
    backend = await upstreams("b")
    await gateway.admin("POST", "/services", {"name": "s", "url": f"http://{backend.address}"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    assert (await gateway.admin("POST", "/plugins", {"name": "faulty"}))[0] == 201
    import importlib
    return gateway, backend, importlib.import_module(module).SEEN


async def test_log_hook_sees_normal_requests(start_gateway, upstreams, install_plugin):
    gateway, backend, seen = await faulty_gateway(start_gateway, upstreams, install_plugin)
    assert (await gateway.proxy("GET", "/api"))[0] == 200
    assert seen == [200]


async def test_exception_in_access_hook_is_a_kong_500_and_still_logged(start_gateway, upstreams, install_plugin):
    gateway, backend, seen = await faulty_gateway(start_gateway, upstreams, install_plugin)
    status, headers, body = await gateway.proxy("GET", "/api?fail")
    assert status == 500
    assert orjson.loads(body) == {"message": "An unexpected error occurred"}
    assert backend.hits == 0
    assert seen == [500]


NO_CONTENT = '''
from kong_py.hookspecs import hookimpl


class Handler:
    name = "{name}"
    PRIORITY = 5

    @hookimpl
    def access(self, ctx):
        ctx.exit(204, {{"message": "a body a 204 cannot have"}})
'''


async def test_exit_with_204_sends_no_body(start_gateway, install_plugin):
    install_plugin("no-content", NO_CONTENT)
    gateway = await start_gateway(plugins="bundled,no-content")
    await gateway.admin("POST", "/routes", {"name": "r", "paths": ["/x"]})
    assert (await gateway.admin("POST", "/routes/r/plugins", {"name": "no-content"}))[0] == 201
    for _ in range(2):
        status, _, body = await gateway.proxy("GET", "/x")
        assert (status, body) == (204, b"")
