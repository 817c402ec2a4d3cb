"""AWS SigV4 for Bedrock: the gateway signs the final request with botocore, and
the receiving upstream recomputes the signature with botocore from what it got."""
from __future__ import annotations

import json

from cred_fakes import check_sigv4, lower, route_to, sigv4_checker
from kong_py_plugins.credentials.aws import region_for

KEY_ID = "AKIAKPTESTEXAMPLE01"
SECRET = "kp/test+SECRET/access/key/0123456789ab"
TOKEN = "kp-session-token-FwoGZXIvYXdzEXAMPLE"
CONVERSE = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"


def aws(**extra):
    return {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET, **extra}


async def test_bedrock_requests_are_signed(start_gateway, upstreams):
    gateway = await start_gateway()
    bedrock = await upstreams("bedrock", handler=sigv4_checker(SECRET, TOKEN))
    await route_to(gateway, [{"target": bedrock.address, "provider": "bedrock", "path": CONVERSE,
                              "credentials": aws(aws_session_token=TOKEN, aws_region="eu-west-3")}])
    payload = {"messages": [{"role": "user", "content": [{"text": "hello"}]}]}
    # a Converse body on a path that is no OpenAI or Anthropic endpoint: it goes as it is
    status, _, body = await gateway.proxy("POST", "/r/converse?x=1&a=b%20c", json=payload,
                                          headers={"Authorization": "Bearer client-key"})
    assert status == 200, body
    result = bedrock.requests[-1]["sigv4"]
    assert result["valid"] is True
    assert (result["access_key"], result["region"], result["service"]) == (KEY_ID, "eu-west-3", "bedrock")
    assert {"host", "x-amz-date", "x-amz-security-token", "content-type"} <= set(result["signed_headers"])
    assert result["security_token"] == TOKEN
    sent = bedrock.requests[-1]
    assert sent["path"] == CONVERSE + "?x=1&a=b%20c"
    assert json.loads(sent["body"]) == payload


async def test_the_signed_host_is_the_host_sent(start_gateway, upstreams):
    """Signed over the Host the core sends: upstream.host_header here, the client's with preserve_host."""
    gateway = await start_gateway()
    bedrock = await upstreams("bedrock", handler=sigv4_checker(SECRET))
    await route_to(gateway, [{"target": bedrock.address, "path": CONVERSE, "credentials": aws()}],
                   upstream={"host_header": "bedrock-runtime.us-west-2.amazonaws.com"})
    status, _, _ = await gateway.proxy("POST", "/r/c", json={"a": 1})
    assert status == 200
    assert lower(bedrock.requests[-1]["headers"])["host"] == "bedrock-runtime.us-west-2.amazonaws.com"
    assert bedrock.requests[-1]["sigv4"]["valid"] is True
    assert bedrock.requests[-1]["sigv4"]["region"] == "us-east-1"  # no aws_region, no region in the target's host

    gateway2 = await start_gateway()
    bedrock2 = await upstreams("bedrock2", handler=sigv4_checker(SECRET))
    await route_to(gateway2, [{"target": bedrock2.address, "credentials": aws(aws_service="bedrock-agent")}],
                   route={"preserve_host": True})
    status, _, _ = await gateway2.proxy("GET", "/r/agents", headers={"Host": "my.gateway.example"})
    assert status == 200
    result = bedrock2.requests[-1]["sigv4"]
    assert result["valid"] is True and result["service"] == "bedrock-agent"
    assert lower(bedrock2.requests[-1]["headers"])["host"] == "my.gateway.example"


async def test_the_signature_covers_a_body_changed_by_a_higher_priority_plugin(start_gateway, upstreams,
                                                                              install_plugin):
    """ai-proxy translates the body in its own balancer hook (higher PRIORITY): the
    signature is computed after it, over what is really sent."""
    install_plugin("translate", '''
from kong_py.hookspecs import hookimpl


class Handler:
    name = "{name}"
    PRIORITY = 770
    VERSION = "1.0.0"
    ALWAYS_ON = True

    @hookimpl
    async def balancer(self, ctx):
        ctx.upstream_request.body = b'{{"messages": [{{"role": "user", "content": [{{"text": "translated"}}]}}]}}'
        ctx.upstream_request.path = "/model/amazon.nova-pro-v1%3A0/converse"
        ctx.upstream_request.query_string = "trace=1"
''')
    gateway = await start_gateway(plugins="bundled,translate")
    bedrock = await upstreams("bedrock", handler=sigv4_checker(SECRET))
    await route_to(gateway, [{"target": bedrock.address, "provider": "bedrock", "credentials": aws(
        aws_region="us-west-2")}])
    status, _, body = await gateway.proxy("POST", "/r/v1/chat/completions", json={"model": "nova", "messages": []})
    assert status == 200, body
    sent = bedrock.requests[-1]
    assert sent["sigv4"]["valid"] is True
    assert sent["path"] == "/model/amazon.nova-pro-v1%3A0/converse?trace=1"
    assert "translated" in sent["body"]


async def test_a_retry_is_signed_with_the_next_targets_keys(start_gateway, upstreams):
    from aiohttp import web

    async def throttled(request, upstream):
        return web.json_response({"message": "ThrottlingException"}, status=503)

    gateway = await start_gateway()
    first = await upstreams("first", handler=throttled)
    second = await upstreams("second", handler=sigv4_checker("second/SECRET/key/abcdefabcdef"))
    await route_to(gateway, [
        {"target": first.address, "priority": 1, "credentials": aws()},
        {"target": second.address, "priority": 2, "credentials": {
            "aws_access_key_id": "AKIASECONDTARGET02", "aws_secret_access_key": "second/SECRET/key/abcdefabcdef",
            "aws_region": "ap-south-1"}},
    ], retries=1)
    status, _, body = await gateway.proxy("POST", "/r/c", json={"q": 1})
    assert status == 200, body
    assert second.requests[-1]["sigv4"]["valid"] is True
    assert second.requests[-1]["sigv4"]["access_key"] == "AKIASECONDTARGET02"
    assert KEY_ID in first.requests[-1]["headers"]["Authorization"]


async def test_allow_override_keeps_a_clients_own_signature(start_gateway, upstreams):
    gateway = await start_gateway()
    bedrock = await upstreams("bedrock")
    await route_to(gateway, [{"target": bedrock.address, "credentials": aws(allow_override=True)}])
    client_auth = "AWS4-HMAC-SHA256 Credential=AKIACLIENT/20240101/us-east-1/bedrock/aws4_request, x"
    await gateway.proxy("POST", "/r/c", json={}, headers={"Authorization": client_auth})
    assert bedrock.requests[-1]["headers"]["Authorization"] == client_auth
    await gateway.proxy("POST", "/r/c", json={})
    assert KEY_ID in bedrock.requests[-1]["headers"]["Authorization"]


async def test_the_checker_refuses_a_wrong_signature(start_gateway, upstreams):
    """The receiving side really checks: keys that differ from the signer's fail."""
    gateway = await start_gateway()
    bedrock = await upstreams("bedrock", handler=sigv4_checker("not-the-secret-that-signed"))
    await route_to(gateway, [{"target": bedrock.address, "credentials": aws()}], retries=0)
    status, _, _ = await gateway.proxy("POST", "/r/c", json={"a": 1})
    assert status == 403 and bedrock.requests[-1]["sigv4"]["valid"] is False
    from multidict import CIMultiDict
    assert check_sigv4("GET", "/", CIMultiDict({"Host": "h"}), b"", SECRET)["valid"] is False


def test_region_from_the_endpoint_name():
    assert region_for("bedrock-runtime.eu-central-1.amazonaws.com", None) == "eu-central-1"
    assert region_for("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", None) == "us-gov-west-1"
    assert region_for("bedrock-runtime.us-west-2.amazonaws.com", "ca-central-1") == "ca-central-1"
    assert region_for("127.0.0.1", None) == "us-east-1"
