"""AWS Signature Version 4 (Bedrock), computed by botocore over the final request.

The signature covers the method, the path and query exactly as they are sent,
the ``Host`` header the gateway will send, ``Content-Type``, the ``X-Amz-*``
headers and the body, so it runs after every other change to the request.
"""
from __future__ import annotations

import logging
import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

#: the headers the gateway signs (besides the X-Amz-* ones); others may change on the way
SIGNED = ("content-type",)
_REGION_IN_HOST = re.compile(r"\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$")
DEFAULT_SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"


class _NoSigningDetails(logging.Filter):
    """botocore logs the canonical request (session token included) at DEBUG: drop those lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_signing_log = logging.getLogger("botocore.auth")
if not any(isinstance(f, _NoSigningDetails) for f in _signing_log.filters):
    _signing_log.addFilter(_NoSigningDetails())


def region_for(host: str, configured: str | None) -> str:
    """``aws_region``, else the region in an AWS endpoint's name, else us-east-1."""
    if configured:
        return configured
    match = _REGION_IN_HOST.search(host.lower())
    return match[1] if match else DEFAULT_REGION


def sign(method: str, scheme: str, host: str, path: str, query: str, headers: dict[str, str],
         body: bytes, access_key: str, secret_key: str, token: str | None, region: str,
         service: str) -> dict[str, str]:
    """The headers to add: ``Authorization``, ``X-Amz-Date`` and, with a session
    token, ``X-Amz-Security-Token``. ``headers`` are the ones to sign (``Host``
    first, as the gateway sends it)."""
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    SigV4Auth(Credentials(access_key, secret_key, token), service, region).add_auth(request)
    out = {"Authorization": request.headers["Authorization"], "X-Amz-Date": request.headers["X-Amz-Date"]}
    if token:
        out["X-Amz-Security-Token"] = request.headers["X-Amz-Security-Token"]
    return out
