"""Loads plugins (bundled folders and ``kong_py.plugins`` entry points), keeps the
allow-listed ones, and answers questions about them: schemas, algorithms,
Admin API routes and the per-route phase chains."""
from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable

import pluggy
from pydantic import BaseModel, ValidationError

from . import hookspecs
from .schemas.base import SchemaError, schema_error

log = logging.getLogger("kong_py.plugins")

ENTRY_POINT_GROUP = "kong_py.plugins"


class PluginLoadError(Exception):
    """A plugin that is enabled cannot be loaded or is malformed."""


@dataclass(slots=True)
class PhaseCall:
    """One plugin's hook for one phase, with its validated config."""

    name: str
    priority: int
    call: Callable[..., Any]
    conf: Any
    is_async: bool


@dataclass(slots=True)
class Chain:
    """The hooks to run for a route, per phase, in PRIORITY order."""

    access: tuple[PhaseCall, ...] = ()
    balancer: tuple[PhaseCall, ...] = ()
    try_outcome: tuple[PhaseCall, ...] = ()
    header_filter: tuple[PhaseCall, ...] = ()
    body_filter: tuple[PhaseCall, ...] = ()
    log: tuple[PhaseCall, ...] = ()


@dataclass
class AlgorithmInfo:
    name: str
    factory: Callable[..., Any]
    plugin: str


@dataclass
class AdminRoute:
    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...]


@dataclass
class MetricFamily:
    name: str
    kind: str
    help: str
    collect: Callable[[Any], Iterable[tuple[dict[str, str], float]]]
    plugin: str


@dataclass
class PluginManager:
    """One per worker: the loaded plugins and what they registered."""

    enabled: Iterable[str] = ("bundled",)
    pm: pluggy.PluginManager = field(init=False)
    handlers: dict[str, Any] = field(init=False, default_factory=dict)
    bundled: set[str] = field(init=False, default_factory=set)
    algorithms: dict[str, AlgorithmInfo] = field(init=False, default_factory=dict)
    algorithm_aliases: dict[str, str] = field(init=False, default_factory=dict)
    admin_routes: list[AdminRoute] = field(init=False, default_factory=list)
    metrics: list[MetricFamily] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager("kong_py")
        self.pm.add_hookspecs(hookspecs)
        wanted = list(self.enabled)
        available = dict(_bundled_plugins())
        self.bundled = set(available)
        available.update(_entry_point_plugins())
        names: list[str] = []
        for item in wanted:
            if item == "bundled":
                names.extend(sorted(self.bundled))
            elif item not in available:
                raise PluginLoadError(f"plugin '{item}' is enabled but not installed")
            else:
                names.append(item)
        for name in dict.fromkeys(names):
            self.add(available[name]())

    def add(self, handler: Any) -> None:
        """Register one plugin object (validated, and checked for misspelled hooks)."""
        name = getattr(handler, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginLoadError(f"plugin {handler!r} has no 'name'")
        if not isinstance(getattr(handler, "PRIORITY", None), int):
            raise PluginLoadError(f"plugin '{name}' has no integer PRIORITY")
        config = getattr(handler, "Config", None)
        if config is not None and not (inspect.isclass(config) and issubclass(config, BaseModel)):
            raise PluginLoadError(f"plugin '{name}': Config must be a pydantic model")
        try:
            self.pm.register(handler, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            raise PluginLoadError(f"plugin '{name}': {_describe(exc)}") from None
        self.handlers[name] = handler
        for impl in self.pm.hook.register_algorithms.get_hookimpls():
            if impl.plugin_name == name:
                impl.function(**_only(impl, register=self._algorithm_registrar(name)))
        for impl in self.pm.hook.register_admin_routes.get_hookimpls():
            if impl.plugin_name == name:
                impl.function(**_only(impl, register=self._route_registrar()))
        for impl in self.pm.hook.register_metrics.get_hookimpls():
            if impl.plugin_name == name:
                impl.function(**_only(impl, register=self._metric_registrar(name)))

    def _algorithm_registrar(self, plugin: str) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], aliases: Iterable[str] = ()) -> None:
            self.algorithms[name] = AlgorithmInfo(name, factory, plugin)
            for alias in aliases:
                self.algorithm_aliases[alias] = name
        return register

    def _route_registrar(self) -> Callable[..., None]:
        def register(path: str, endpoint: Callable[..., Any], methods: Iterable[str] = ("GET",)) -> None:
            self.admin_routes.append(AdminRoute(path, endpoint, tuple(methods)))
        return register

    def _metric_registrar(self, plugin: str) -> Callable[..., None]:
        def register(name: str, kind: str, help: str,
                     collect: Callable[[Any], Iterable[tuple[dict[str, str], float]]]) -> None:
            if kind not in ("counter", "gauge"):
                raise PluginLoadError(f"plugin '{plugin}': metric {name} has kind {kind!r}; "
                                      "expected 'counter' or 'gauge'")
            if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                raise PluginLoadError(f"plugin '{plugin}': {name!r} is not a valid metric name")
            self.metrics.append(MetricFamily(name, kind, help, collect, plugin))
        return register

    # -- schemas --------------------------------------------------------
    def config_model(self, name: str) -> type[BaseModel] | None:
        return getattr(self.handlers[name], "Config", None)

    def validate_config(self, name: str, config: dict[str, Any] | None) -> dict[str, Any]:
        """The plugin's config with defaults filled in; SchemaError under ``config``."""
        model = self.config_model(name)
        if model is None:
            if config:
                raise SchemaError({"config": {key: "unknown field" for key in config}})
            return {}
        try:
            return model.model_validate(config or {}).model_dump(mode="json")
        except ValidationError as exc:
            raise SchemaError({"config": schema_error(exc).fields}) from None

    def schema_json(self, name: str) -> dict[str, Any]:
        model = self.config_model(name)
        config = model.model_json_schema() if model else {"type": "object", "properties": {}}
        return {"fields": [{"config": config}], "name": name,
                "priority": self.handlers[name].PRIORITY,
                "version": getattr(self.handlers[name], "VERSION", "0.0.0")}

    def parsed_config(self, name: str, config: dict[str, Any] | None) -> Any:
        """The config object handed to hooks (a model instance when there is a schema)."""
        model = self.config_model(name)
        return model.model_validate(config or {}) if model else (config or {})

    # -- chains ---------------------------------------------------------
    def always_on(self) -> list[str]:
        return [n for n, h in self.handlers.items() if getattr(h, "ALWAYS_ON", False)]

    def chain(self, plugins: Iterable[tuple[str, Any]], upstream: dict[str, Any] | None = None,
              targets: Iterable[Any] = ()) -> Chain:
        """Build the phase chain for ``(name, parsed config)`` pairs.

        Always-on plugins join it unless their ``always_on_for(upstream, targets)``
        says the route's upstream is none of their business (AI proxying only
        where there are provider targets), so other routes pay nothing for them.
        """
        confs = dict(plugins)
        targets = list(targets)
        for name in self.always_on():
            if name not in confs:
                scope = getattr(self.handlers[name], "always_on_for", None)
                if scope is not None and not scope(upstream, targets):
                    continue
                confs[name] = self.parsed_config(name, None)
        phases: dict[str, list[PhaseCall]] = {}
        for phase in hookspecs.PHASES:
            calls = []
            for impl in getattr(self.pm.hook, phase).get_hookimpls():
                if impl.plugin_name not in confs:
                    continue
                handler = self.handlers[impl.plugin_name]
                calls.append(PhaseCall(impl.plugin_name, handler.PRIORITY,
                                       _positional(impl, phase), confs[impl.plugin_name],
                                       inspect.iscoroutinefunction(impl.function)))
            calls.sort(key=lambda c: -c.priority)
            phases[phase] = calls
        return Chain(**{phase: tuple(calls) for phase, calls in phases.items()})


#: phases whose hooks take a third argument
THIRD_ARGUMENT = {"body_filter": "chunk", "try_outcome": "outcome"}


def _describe(exc: Exception) -> str:
    """pluggy's message without the object's memory address."""
    return re.sub(r" ?<[^>]* at 0x[0-9a-f]+>", "", str(exc)).strip()


def _only(impl: Any, **kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in impl.argnames}


def _positional(impl: Any, phase: str) -> Callable[..., Any]:
    """Adapt a hook that takes a subset of ``(ctx, conf[, chunk])`` to positional calls."""
    third = THIRD_ARGUMENT.get(phase)
    full = ("ctx", "conf", third) if third else ("ctx", "conf")
    names = tuple(impl.argnames)
    if names == full:
        return impl.function
    fn = impl.function
    if third:
        return lambda ctx, conf, extra: fn(**_pick(names, ctx=ctx, conf=conf, **{third: extra}))
    return lambda ctx, conf: fn(**_pick(names, ctx=ctx, conf=conf))


def _pick(names: tuple[str, ...], **kwargs: Any) -> dict[str, Any]:
    return {n: kwargs[n] for n in names}


def _bundled_plugins() -> Iterable[tuple[str, Callable[[], Any]]]:
    """First-party plugins: every package under ``kong_py_plugins`` exporting ``plugin``."""
    package = importlib.import_module("kong_py_plugins")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"kong_py_plugins.{info.name}")
        handler = getattr(module, "plugin", None)
        if handler is not None:  # a class gets one instance per worker: state of its own
            yield handler.name, (lambda h=handler: h() if inspect.isclass(h) else h)


def _entry_point_plugins() -> Iterable[tuple[str, Callable[[], Any]]]:
    """Third-party plugins from the ``kong_py.plugins`` entry-point group (loaded on demand)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        def load(ep: Any = ep) -> Any:
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party package must say so clearly
                raise PluginLoadError(f"plugin '{ep.name}' failed to load: {exc}") from exc
            return obj() if inspect.isclass(obj) else obj
        yield ep.name, load
