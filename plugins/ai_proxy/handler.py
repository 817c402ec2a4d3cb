"""The ai-proxy plugin: one upstream, many LLM providers, any OpenAI or Anthropic client.

Bundled and always on for routes whose upstream has provider targets
(``always_on_for``). Per request:

* ``access``: the client's format comes from the path it called
  (``.../chat/completions``, ``.../embeddings``, ``.../messages``; ``GET
  .../models`` is answered here); the model routes the request to the targets
  that serve it (``ctx.restrict_targets``); no target: 400 in the client's
  format.
* ``balancer`` (every try): the request is written for the chosen target's
  provider (path, query, body, version headers), untouched when the target
  speaks the client's format and gets the client's model.
* ``header_filter``/``body_filter``: the answer is translated back, streams
  event by event as they arrive; usage is read for the metrics.
* ``log``: requests and tokens counted by upstream, target, provider, model.

Credentials are the credentials plugin's, which runs after this one in the
balancer phase (lower PRIORITY) and so sees the final body.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import orjson

from kong_py.hookspecs import hookimpl
from kong_py.proxy.context import Context, ContextKey

from .formats import CLIENTS, request_kind
from .providers.base import Json, Provider
from .routing import AiTarget, eligible, listed_models

#: what this request is and how far it got (``ctx.vars``)
EXCHANGE = ContextKey["Exchange"]("ai-proxy.exchange")
#: an answer buffered to read its usage is given up past this size (it still streams)
OBSERVE_LIMIT = 1024 * 1024
STREAM_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream", "application/x-ndjson")


@dataclass
class Exchange:
    client: Any
    kind: str
    request: Json
    stream: bool
    routes: dict[str, tuple[AiTarget, str]]
    pivot: Json | None = None
    # the answer being relayed
    provider: Provider | None = None
    model: str = ""
    mode: str = ""  # observe | observe-stream | json | error | stream
    buffer: list[bytes] = field(default_factory=list)
    size: int = 0
    decoder: Any = None
    encoder: Any = None
    usage: Json | None = None


class AiProxy:
    name = "ai-proxy"
    PRIORITY = 770  # Kong's ai-proxy: after authentication, before the credentials plugin (balancer phase)
    VERSION = "1.0.0"
    ALWAYS_ON = True

    def __init__(self) -> None:
        self._targets: dict[str, tuple[Any, list[AiTarget]]] = {}
        #: (upstream, target, provider, model) -> [requests, prompt tokens, completion tokens]
        self.counts: dict[tuple[str, str, str, str], list[int]] = {}

    def always_on_for(self, upstream: dict[str, Any] | None, targets: Iterable[Any]) -> bool:
        return any(AiTarget.of(t) is not None for t in targets)

    def _ai_targets(self, ctx: Context) -> list[AiTarget]:
        """The upstream's provider targets, prepared once per configuration."""
        upstream = ctx.upstream or {}
        balancer = ctx.worker.snapshot.balancers.get(upstream.get("id"))
        if balancer is None:
            return []
        cached = self._targets.get(upstream["id"])
        if cached is None or cached[0] is not balancer:
            cached = self._targets[upstream["id"]] = (balancer, [a for t in balancer.targets
                                                                 if (a := AiTarget.of(t)) is not None])
        return cached[1]

    # -- access: what the request is, who may serve it ---------------------------------------
    @hookimpl
    async def access(self, ctx: Context) -> None:
        found = request_kind(ctx.request.path, ctx.request.method)
        if found is None or ctx.upstream is None:
            return  # another path: it goes to the target as it is
        client = CLIENTS[found[0]]
        kind = found[1]
        targets = self._ai_targets(ctx)
        if kind == "models":
            ctx.exit(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": p}
                                                      for m, p in listed_models(targets)]})
        try:
            request = orjson.loads(await ctx.read_body())
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            ctx.exit(400, client.message(400, "the request body must be a JSON object"))
        model = request.get("model") if isinstance(request.get("model"), str) else None
        routes = eligible(targets, model, kind)
        if not routes:
            message = (f"no target of this upstream serves the model '{model}'" if model
                       else "the request names no model and no target has a default_model")
            ctx.exit(400, client.message(400, message))
        ctx.restrict_targets(routes)
        ctx.vars[EXCHANGE] = Exchange(client, kind, request, bool(request.get("stream")), routes)

    # -- balancer: the request for this try's target ------------------------------------------
    @hookimpl
    def balancer(self, ctx: Context) -> None:
        ex: Exchange | None = ctx.vars.get(EXCHANGE)
        if ex is None or ctx.target is None:
            return
        ai_target, model = ex.routes[ctx.target.id]
        provider = ai_target.provider
        upstream_request = ctx.upstream_request
        path, query = provider.endpoint(ex.kind, model, ex.stream, ctx.target)
        upstream_request.path = path
        if query:
            upstream_request.query_string = query
        if not _translated(ex, provider):
            if model and model != ex.request.get("model"):  # default_model or an alias: the same format, another model
                upstream_request.body = orjson.dumps({**ex.request, "model": model})
        else:
            if ex.pivot is None:
                ex.pivot = ex.client.to_pivot(ex.request)
            upstream_request.body = orjson.dumps(provider.encode_request(ex.pivot, model, ex.stream))
            headers = upstream_request.headers
            headers["Content-Type"] = "application/json"
            headers["Accept-Encoding"] = "identity"  # the answer is read to translate it
        for name, value in provider.request_headers(ctx.target):
            if name not in upstream_request.headers:
                upstream_request.headers[name] = value

    # -- the answer ------------------------------------------------------------------------------
    @hookimpl
    def header_filter(self, ctx: Context) -> None:
        ex: Exchange | None = ctx.vars.get(EXCHANGE)
        response = ctx.response
        if ex is None or ctx.target is None or response is None or response.source != "upstream":
            ctx.skip_body_filter(self.name)
            return
        ai_target, model = ex.routes[ctx.target.id]
        provider = ex.provider = ai_target.provider
        ex.model = model
        headers = response.headers
        headers["X-Kong-LLM-Model"] = f"{provider.name}/{model}"
        streaming = ex.stream and response.status < 300 and any(
            t in headers.get("Content-Type", "") for t in STREAM_TYPES)
        if not _translated(ex, provider):
            ex.mode = "observe-stream" if streaming else "observe"
            if streaming:
                ex.decoder = provider.stream_decoder(model)
            return
        headers.popall("Content-Encoding", None)
        if response.status >= 400:
            ex.mode = "error"
            response.status = provider.decode_error(response.status, b"")[0]
            headers["Content-Type"] = "application/json"
        elif streaming:
            ex.mode = "stream"
            ex.decoder = provider.stream_decoder(model)
            ex.encoder = ex.client.encoder(ex.request, model)
            headers["Content-Type"] = "text/event-stream; charset=utf-8"
        else:
            ex.mode = "json"
            headers["Content-Type"] = "application/json"

    @hookimpl
    def body_filter(self, ctx: Context, chunk: bytes) -> bytes:
        ex: Exchange = ctx.vars[EXCHANGE]
        mode = ex.mode
        last = not chunk
        if mode == "observe":
            if ex.size <= OBSERVE_LIMIT:
                ex.buffer.append(chunk)
                ex.size += len(chunk)
                if last:
                    ex.usage = _usage_of(ex.provider, b"".join(ex.buffer))
            return chunk
        if mode == "observe-stream":
            for event in ex.decoder.close() if last else ex.decoder.feed(chunk):
                if event.get("usage"):
                    ex.usage = event["usage"]
            return chunk
        if mode == "stream":
            events = ex.decoder.close() if last else ex.decoder.feed(chunk)
            for event in events:
                if event.get("usage"):
                    ex.usage = event["usage"]
            out = ex.encoder.encode(events)
            return out + ex.encoder.finish() if last else out
        ex.buffer.append(chunk)  # json / error: the whole answer is needed (they are small)
        if not last:
            return b""
        return self._translate_whole(ctx, ex, b"".join(ex.buffer))

    def _translate_whole(self, ctx: Context, ex: Exchange, data: bytes) -> bytes:
        provider = ex.provider
        assert provider is not None
        if ex.mode == "error":
            status, error = provider.decode_error(ctx.response.status if ctx.response else 502, data)
            return orjson.dumps(ex.client.error(status, error))
        try:
            answer = provider.decode_response(orjson.loads(data), ex.model)
        except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, IndexError):
            return orjson.dumps(ex.client.message(502, "the provider's answer could not be read"))
        ex.usage = answer.get("usage")
        return orjson.dumps(ex.client.from_pivot(answer, ex.model))

    # -- metrics -------------------------------------------------------------------------------
    @hookimpl
    def log(self, ctx: Context) -> None:
        ex: Exchange | None = ctx.vars.get(EXCHANGE)
        if ex is None or ex.provider is None or ctx.target is None:
            return
        key = ((ctx.upstream or {}).get("name", ""), ctx.target.target, ex.provider.name, ex.model)
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0, 0, 0]
        counts[0] += 1
        usage = ex.usage or {}
        counts[1] += int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
        counts[2] += int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)

    @hookimpl
    def register_metrics(self, register: Callable[..., None]) -> None:
        register("kong_py_ai_requests_total", "counter", "AI requests answered by a provider",
                 lambda worker: self._samples(None))
        register("kong_py_ai_tokens_total", "counter", "Tokens the providers reported, by kind",
                 lambda worker: self._samples("tokens"))

    def _samples(self, what: str | None) -> Iterable[tuple[dict[str, str], float]]:
        for (upstream, target, provider, model), (requests, prompt, completion) in list(self.counts.items()):
            labels = {"upstream": upstream, "target": target, "provider": provider, "model": model}
            if what is None:
                yield labels, float(requests)
            else:
                yield {**labels, "kind": "prompt"}, float(prompt)
                yield {**labels, "kind": "completion"}, float(completion)


def _translated(ex: Exchange, provider: Provider) -> bool:
    """Whether the target speaks another format than the client (else bytes pass as they are)."""
    return provider.wire != ex.client.wire


def _usage_of(provider: Provider | None, data: bytes) -> Json | None:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return body.get("usage") if isinstance(body, dict) and isinstance(body.get("usage"), dict) else None
