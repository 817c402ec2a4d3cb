"""Fixtures for the credentials plugin: fake token servers, TLS for them, and a
route to an upstream whose targets carry credentials."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from cred_fakes import TokenServer, server_tls
from support import make_certs

# read by google-auth when it is first imported: no probe of a metadata server in this process
os.environ.setdefault("NO_GCE_CHECK", "true")

#: environment the token libraries read: each test starts without any of it
LIBRARY_ENV = ("AZURE_AUTHORITY_HOST", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
               "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
               "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_POD_IDENTITY_AUTHORITY_HOST",
               "GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST", "GCE_METADATA_ROOT", "GCE_METADATA_IP",
               "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture(autouse=True)
def clean_library_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in LIBRARY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no gcloud credentials of the machine
    # google-auth must never look for a metadata server off loopback
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    folder.mkdir()
    return make_certs(folder)


@pytest.fixture
async def token_servers() -> AsyncIterator[Callable[..., Awaitable[TokenServer]]]:
    """``await token_servers("azure", tls=certs)`` starts a fake token server on 127.0.0.1."""
    started: list[TokenServer] = []

    async def start(prefix: str, tls: Path | None = None, **settings: Any) -> TokenServer:
        server = TokenServer(prefix, **settings)
        await server.start(server_tls(tls) if tls is not None else None)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch, certs: Path) -> Callable[[TokenServer], None]:
    """Point azure-identity at a fake Entra ID: its own AZURE_AUTHORITY_HOST setting, and
    requests' REQUESTS_CA_BUNDLE to trust the fake's certificate."""

    def point(server: TokenServer) -> None:
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", server.base)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs / "ca.pem"))

    return point


@pytest.fixture(params=["form", "json"])
def encoding(request: pytest.FixtureRequest) -> str:
    """Admin API bodies as a ``curl --data`` form and as JSON."""
    return request.param
