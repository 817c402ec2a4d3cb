"""The access log line: client, request, status, target, tries, total time."""
from __future__ import annotations

import time

from .context import Context


def access_line(ctx: Context) -> str:
    """One line per request: client, request, status, target, tries, total ms."""
    request = ctx.request
    return log_line(request.client_ip, request.method, request.raw_path, request.query_string,
                     ctx.response.status if ctx.response is not None else 0,
                     request.headers.get("user-agent", "-"),
                     ctx.target.target if ctx.target is not None else "-", len(ctx.tries), ctx.started_at)


def log_line(client: str, method: str, path: str, query: str, status: int, agent: str,
              target: str, tries: int, started: float) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    elapsed = int((time.monotonic() - started) * 1000)
    query = f"?{query}" if query else ""
    agent = agent.replace('"', "'")
    return (f'{client} - - [{stamp}] "{method} {path}{query} HTTP/1.1" '
            f'{status} "{agent}" target={target} tries={tries} latency_ms={elapsed}\n')
