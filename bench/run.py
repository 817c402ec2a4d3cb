"""End-to-end proxy benchmark: direct upstream vs. through the gateway, in one run.

What it does (everything on 127.0.0.1; every process it starts is stopped on
exit, Ctrl-C, SIGTERM or error, and dies with it if it is killed):

1. starts ``bench/upstream.py`` (a raw asyncio HTTP/1.1 server) in its own
   process, listening on as many loopback ports as the largest ``--targets``;
2. starts the gateway as a real subprocess (``bin/gateway start``, temporary
   prefix, free ports, one worker, log level warn), waits for ``/status``, and
   creates through the Admin API one service + route ``/bench/t<N>`` per target
   count N, each pointing at upstream ``bench-<N>``;
3. for each algorithm: (re)creates the upstreams ``bench-<N>`` with it and N
   targets (skipping the algorithm, with a note, if the Admin API answers
   400), then runs ``bench/loadgen.py`` in a separate process: straight against
   one upstream port (in the first algorithm's rounds), then through the
   gateway for each N; every measurement has its own warm-up, and
   ``--repeat`` interleaves rounds and reports medians;
4. prints a table and writes ``bench/results/latest.json``.

    .venv/bin/python bench/run.py                     # or: make bench
    .venv/bin/python bench/run.py --duration 10 --connections 100 --repeat 3
    .venv/bin/python bench/run.py --algorithms all --targets 2,1000

See bench/README.md for what the numbers mean.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_DIR = BENCH / "results"
HOST = "127.0.0.1"

#: algorithms tried by ``--algorithms all``, in this order
KNOWN_ALGORITHMS = ["round-robin", "least-connections", "consistent-hashing", "latency"]
#: extra upstream fields an algorithm needs
ALGORITHM_FIELDS: dict[str, dict[str, Any]] = {
    "consistent-hashing": {"hash_on": "header", "hash_on_header": "x-user"},
}
#: the health-checks scenario: passive and active checks on (probes every second)
HEALTH_CHECKS: dict[str, Any] = {
    "active": {"http_path": "/health", "healthy": {"interval": 1, "successes": 2},
               "unhealthy": {"interval": 1, "http_failures": 3, "tcp_failures": 3, "timeouts": 3}},
    "passive": {"healthy": {"successes": 2},
                "unhealthy": {"http_failures": 3, "tcp_failures": 3, "timeouts": 3}},
}
#: every request (direct and proxied) carries ``x-user: user-<0..999>``
VARY_HEADER = "x-user"
FLOOR_RPS = 3000  # the project's floor for one worker, proxied
ROUTE_PREFIX = "/bench"
PREFIX_STEM = "kong_py-bench-"  # temporary gateway prefixes: <tmp>/kong_py-bench-<runner pid>-xxxx

_libc: Any = None
with contextlib.suppress(OSError):
    _libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive this runner


# -- process handling ---------------------------------------------------------------


class Processes:
    """Children started by the runner; ``close()`` stops every one of them."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[Any], float]] = []

    def spawn(self, name: str, cmd: list[str], *, grace: float = 5.0, **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent, **kwargs)
        self.children.append((name, proc, grace))
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        for entry in list(self.children):
            if entry[1] is proc:
                self.children.remove(entry)
                _terminate(proc, entry[2])

    def close(self) -> None:
        while self.children:
            _name, proc, grace = self.children.pop()
            _terminate(proc, grace)


def _terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the gateway and anything it forked
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _remove_stale_prefixes() -> None:
    """Temporary prefixes left by runs that were killed (SIGKILL skips clean-up)."""
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX_STEM}*"):
        pid = path.name[len(PREFIX_STEM):].split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _raise_nofile() -> None:
    """1,000 targets mean 1,000+ sockets in the upstream and the gateway."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# -- the fast upstream -----------------------------------------------------------------


def start_upstream(procs: Processes, count: int) -> tuple[subprocess.Popen[Any], list[int]]:
    cmd = [sys.executable, str(BENCH / "upstream.py"), "--count", str(count), "--host", HOST]
    proc = procs.spawn("upstream", cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, grace=3.0)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise RuntimeError(f"upstream server exited with status {proc.wait()}")
    return proc, json.loads(line)["ports"]


def upstream_counts(port: int) -> dict[int, int]:
    status, body = _http("GET", HOST, port, "/__counts")
    return {int(k): v for k, v in body.items()} if status == 200 else {}


# -- the gateway -------------------------------------------------------------------------


class Gateway:
    def __init__(self, procs: Processes, prefix: Path, cpus: set[int] | None) -> None:
        self.proxy_port = _free_port()
        self.admin_port = _free_port()
        while self.admin_port == self.proxy_port:
            self.admin_port = _free_port()
        self.prefix = prefix
        self.log_path = prefix / "gateway.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update({
            "GATEWAY_PREFIX": str(prefix),
            "GATEWAY_PROXY_LISTEN": f"{HOST}:{self.proxy_port}",
            "GATEWAY_ADMIN_LISTEN": f"{HOST}:{self.admin_port}",
            "GATEWAY_WORKERS": "1",
            "GATEWAY_LOG_LEVEL": "warn",
        })
        with open(self.log_path, "wb") as log:
            self.proc = procs.spawn("gateway", [str(REPO / "bin" / "gateway"), "start"], cwd=prefix, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, grace=15.0)
        self.cpus = cpus

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with status {self.proc.returncode}\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                if self.admin("GET", "/status")[0] == 200:
                    if self.cpus:
                        _pin(self.proc.pid, self.cpus)
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not answer /status within {timeout:g}s\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no gateway output)"
        return "\n".join(["--- gateway output (tail) ---", *text[-lines:]])

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return _http(method, HOST, self.admin_port, path, body)


def _http(method: str, host: str, port: int, path: str, body: Any = None,
          conn: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace")
        return resp.status, data
    finally:
        if own:
            conn.close()


def _expect(result: tuple[int, Any], *ok: int) -> Any:
    status, body = result
    if status not in ok:
        raise RuntimeError(f"Admin API answered {status}: {body}")
    return body


def _upstream_name(count: int, health: bool = False) -> str:
    return f"bench-{count}" + ("-hc" if health else "")


def _route_path(count: int, health: bool = False) -> str:
    return f"{ROUTE_PREFIX}/t{count}" + ("hc" if health else "")


def setup_routes(gw: Gateway, scenarios: list[tuple[int, bool]]) -> None:
    """One service and route per scenario: ``/bench/t<N>`` -> upstream ``bench-<N>``
    (``/bench/t<N>hc`` -> ``bench-<N>-hc`` with health checks)."""
    for count, health in scenarios:
        name = _upstream_name(count, health)
        _expect(gw.admin("POST", "/services", {"name": name, "host": name}), 201)
        _expect(gw.admin("POST", f"/services/{name}/routes",
                         {"name": name, "paths": [_route_path(count, health)]}), 201)


def configure_upstream(gw: Gateway, algorithm: str, count: int, ports: list[int],
                       health: bool = False) -> str | None:
    """(Re)create upstream ``bench-<count>`` with ``algorithm`` and one target per port.

    Returns None when ready, or the Admin API's reason when it rejects the
    algorithm (400).
    """
    name = _upstream_name(count, health)
    _expect(gw.admin("DELETE", f"/upstreams/{name}"), 204, 404)
    status, body = gw.admin("POST", "/upstreams", {"name": name, "algorithm": algorithm,
                                                  **ALGORITHM_FIELDS.get(algorithm, {}),
                                                  **({"healthchecks": HEALTH_CHECKS} if health else {})})
    if status == 400:
        fields = body.get("fields") if isinstance(body, dict) else None
        if fields:
            return "; ".join(f"{k}: {v}" for k, v in fields.items())
        return str(body.get("message") if isinstance(body, dict) else body)
    _expect((status, body), 201)

    stop = threading.Event()

    def add(chunk: list[int]) -> None:
        conn = http.client.HTTPConnection(HOST, gw.admin_port, timeout=60)
        try:
            for port in chunk:
                if stop.is_set():
                    return
                _expect(_http("POST", HOST, gw.admin_port, f"/upstreams/{name}/targets",
                              {"target": f"{HOST}:{port}", "weight": 100}, conn=conn), 201)
        finally:
            conn.close()

    # a few concurrent clients: the gateway coalesces some of the snapshot rebuilds they trigger
    lanes = min(8, len(ports))
    pool = ThreadPoolExecutor(lanes)
    try:
        for future in [pool.submit(add, ports[i::lanes]) for i in range(lanes)]:
            future.result()
    finally:  # on Ctrl-C or an error, the other lanes stop after their current request
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return None


def wait_routable(gw: Gateway, path: str, timeout: float = 15.0) -> None:
    """Until the proxy answers 200 on ``path`` (the new configuration is live)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            last = _http("GET", HOST, gw.proxy_port, path)
            if last[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the proxy did not route {path} within {timeout:g}s (last answer: {last})")


# -- the load generator (child process) -----------------------------------------------


def run_load(procs: Processes, port: int, *, path: str, connections: int, duration: float,
             warmup: float, cpus: set[int] | None, vary_path: bool) -> dict[str, Any]:
    spec = {"port": port, "path": path, "connections": connections, "duration": duration,
            "warmup": warmup, "cpus": sorted(cpus) if cpus else None, "vary_path": vary_path}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--loadgen-child", json.dumps(spec)]
    proc = procs.spawn("loadgen", cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, grace=2.0)
    try:
        out, _ = proc.communicate(timeout=warmup + duration + 60)
    finally:
        procs.stop(proc)
    if proc.returncode != 0 or not out:
        raise RuntimeError(f"load generator failed (status {proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1])


def _loadgen_child(spec_text: str) -> None:
    spec = json.loads(spec_text)
    if spec.get("cpus"):
        _pin(0, set(spec["cpus"]))
    sys.path.insert(0, str(BENCH))
    import asyncio

    import loadgen

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    def once(duration: float) -> Any:
        return asyncio.run(loadgen.run(HOST, spec["port"], spec["path"], connections=spec["connections"],
                                       duration=duration, vary_header=VARY_HEADER,
                                       vary_path=spec["vary_path"]))

    if spec["warmup"] > 0:
        once(spec["warmup"])
    res = once(spec["duration"])
    bad = sum(n for status, n in res.statuses.items() if status != 200)
    print(json.dumps({
        "rps": round(res.rps, 1),
        "requests": res.requests,
        "elapsed_s": round(res.elapsed, 3),
        "p50_ms": round(res.percentile(50), 3),
        "p90_ms": round(res.percentile(90), 3),
        "p99_ms": round(res.percentile(99), 3),
        "max_ms": round(max(res.latencies) * 1000, 3) if res.latencies else 0.0,
        "errors": res.errors + bad,
        "statuses": {str(k): v for k, v in sorted(res.statuses.items())},
    }))


# -- CPU placement ---------------------------------------------------------------------


def _pin(pid: int, cpus: set[int]) -> None:
    """Pin a process and all its threads (uvicorn's, aiohttp's resolver pool) to ``cpus``."""
    task_dir = Path(f"/proc/{pid}/task") if pid else Path("/proc/self/task")
    tids = [int(t.name) for t in task_dir.iterdir()] if task_dir.exists() else [pid]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def _placement(mode: str) -> tuple[set[int] | None, set[int] | None]:
    """CPU sets for (the server under test, the load generator); None: the scheduler decides.

    The server under test (the upstream when measured directly, else the
    gateway) gets the last CPU to itself; the load generator the others, and
    the upstream joins it while the gateway is measured.
    """
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if mode == "off" or len(available) < 2:
        return None, None
    return {available[-1]}, set(available[:-1])


# -- reporting -------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> str:
    head = ["scenario", "algorithm", "targets", "req/s", "p50 ms", "p99 ms", "errors", "vs direct", "targets hit"]
    lines = [head]
    for r in rows:
        lines.append([
            r["scenario"] + (" +health" if r.get("health_checks") else ""), r.get("algorithm") or "-",
            str(r.get("targets") or "-"),
            f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["errors"]),
            f"{r['ratio']:.1%}" if r.get("ratio") is not None else "-",
            f"{r['targets_hit']}/{r['targets']}" if r.get("targets_hit") is not None else "-",
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = []
    for n, row in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cpu_list(cpus: set[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cpus or ()))


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per scenario (default 5)")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds of warm-up before each (default 1.5)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent keep-alive connections (default 50)")
    parser.add_argument("--algorithms", default="round-robin",
                        help="comma-separated upstream algorithms, or 'all' for "
                             f"{','.join(KNOWN_ALGORITHMS)} (default round-robin)")
    parser.add_argument("--targets", default="2,1000",
                        help="comma-separated target counts, one gateway run each (default 2,1000)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of measurements, interleaved; the table shows the median (default 1)")
    parser.add_argument("--vary-path", action=argparse.BooleanOptionalAction, default=True,
                        help="request 1,000 distinct paths (/bench/tN/0 ... /999) rather than one fixed URL, "
                             "so URL-keyed caches in the client stack don't flatter small target counts "
                             "(default: on)")
    parser.add_argument("--health", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the smallest target count with passive and active health checks "
                             "on, beside the same case without (default: on)")
    parser.add_argument("--pin", choices=["auto", "off"], default="auto",
                        help="auto: gateway on the last CPU, load generator and upstream on the others")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="where to write JSON")
    args = parser.parse_args(argv)
    args.algorithms = KNOWN_ALGORITHMS if args.algorithms.strip() == "all" else _csv(args.algorithms)
    try:
        args.targets = [int(t) for t in _csv(args.targets)]
    except ValueError:
        parser.error("--targets takes comma-separated integers")
    if not args.algorithms or not args.targets or min(args.targets) < 1:
        parser.error("--algorithms and --targets need at least one value (targets >= 1)")
    if args.duration <= 0 or args.connections < 1 or args.warmup < 0 or args.repeat < 1:
        parser.error("--duration must be > 0, --connections >= 1, --warmup >= 0, --repeat >= 1")
    return args


# -- main ------------------------------------------------------------------------------


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (its own p50/p99 with it), plus every run's figures."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        row["rounds"] = runs
        row["rps_min"] = ordered[0]["rps"]
        row["rps_max"] = ordered[-1]["rps"]
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _raise_nofile()
    server_cpus, load_cpus = _placement(args.pin)
    procs = Processes()
    _remove_stale_prefixes()
    prefix = Path(tempfile.mkdtemp(prefix=f"{PREFIX_STEM}{os.getpid()}-"))
    skipped: list[dict[str, str]] = []
    notes: list[str] = []
    started = time.time()
    t0 = time.monotonic()

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    gw: Gateway | None = None
    try:
        up_proc, ports = start_upstream(procs, max(args.targets))
        gw = Gateway(procs, prefix, server_cpus)
        gw.wait_ready()
        scenarios = [(count, False) for count in args.targets]
        if args.health:
            scenarios.insert(scenarios.index((min(args.targets), False)) + 1, (min(args.targets), True))
        setup_routes(gw, scenarios)
        load = dict(connections=args.connections, duration=args.duration, warmup=args.warmup, cpus=load_cpus,
                    vary_path=args.vary_path)
        print(f"kong_py proxy benchmark: {args.connections} connections, {args.warmup:g}s warm-up + "
              f"{args.duration:g}s per measurement, {args.repeat} round(s), {os.cpu_count()} CPUs"
              + (f"; server under test on CPU {_cpu_list(server_cpus)}, load generator on CPU "
                 f"{_cpu_list(load_cpus)}" if server_cpus else ""), flush=True)

        def measure_direct() -> dict[str, Any]:
            print("  direct -> upstream ...", end=" ", flush=True)
            if server_cpus:
                _pin(up_proc.pid, server_cpus)  # the upstream is the server under test
            try:
                res = run_load(procs, ports[0], path=_route_path(1), **load)
            finally:
                if load_cpus:
                    _pin(up_proc.pid, load_cpus)  # back beside the load generator
            print(f"{res['rps']:,.0f} req/s", flush=True)
            return res

        def measure_gateway(algorithm: str, count: int, health: bool) -> dict[str, Any]:
            print(f"  gateway {algorithm}, {count} target{'s' if count != 1 else ''}"
                  f"{', health checks' if health else ''} ...", end=" ", flush=True)
            before = upstream_counts(ports[0])
            res = run_load(procs, gw.proxy_port, path=_route_path(count, health), **load)
            after = upstream_counts(ports[0])
            per_target = [after.get(p, 0) - before.get(p, 0) for p in ports[:count]]
            res.update(targets_hit=sum(1 for n in per_target if n > 0),
                       per_target_min=min(per_target), per_target_max=max(per_target))
            print(f"{res['rps']:,.0f} req/s", flush=True)
            if gw.proc.poll() is not None:
                raise RuntimeError(f"gateway died during the run\n{gw.log_tail()}")
            return res

        direct_runs: list[dict[str, Any]] = []
        gateway_runs: dict[tuple[str, int, bool], list[dict[str, Any]]] = {}
        setup_times: dict[tuple[str, int, bool], float] = {}
        for algorithm in args.algorithms:
            reason = None
            for count, health in scenarios:
                print(f"  setting up upstream {_upstream_name(count, health)}: {algorithm}, {count} target(s) ...",
                      end=" ", flush=True)
                setup_start = time.monotonic()
                reason = configure_upstream(gw, algorithm, count, ports[:count], health)
                if reason is not None:
                    print(f"skipped (Admin API: 400 {reason})", flush=True)
                    skipped.append({"algorithm": algorithm, "reason": reason})
                    break
                wait_routable(gw, _route_path(count, health))
                setup_times[(algorithm, count, health)] = time.monotonic() - setup_start
                print(f"{setup_times[(algorithm, count, health)]:.1f}s", flush=True)
            if reason is not None:
                for count, health in scenarios:  # leave nothing half-configured behind
                    _expect(gw.admin("DELETE", f"/upstreams/{_upstream_name(count, health)}"), 204, 404)
                continue
            # rounds interleave the scenarios, so a noisy neighbour hits them alike;
            # direct is measured in the rounds of the first algorithm that runs
            for _ in range(args.repeat):
                if len(direct_runs) < args.repeat:
                    direct_runs.append(measure_direct())
                for count, health in scenarios:
                    gateway_runs.setdefault((algorithm, count, health), []).append(
                        measure_gateway(algorithm, count, health))
        while len(direct_runs) < args.repeat:  # every algorithm was skipped
            direct_runs.append(measure_direct())

        direct = _median_row(direct_runs)
        rows: list[dict[str, Any]] = [{"scenario": "direct", "algorithm": None, "targets": None, "ratio": None,
                                       **direct}]
        for (algorithm, count, health), runs in gateway_runs.items():
            res = _median_row(runs)
            rows.append({"scenario": "gateway", "algorithm": algorithm, "targets": count, "health_checks": health,
                         "ratio": res["rps"] / direct["rps"] if direct["rps"] else None,
                         "setup_s": round(setup_times[(algorithm, count, health)], 2), **res})

        print()
        if args.repeat > 1:
            print(f"median of {args.repeat} rounds (by req/s):")
        print(_table(rows))
        for s in skipped:
            notes.append(f"skipped {s['algorithm']}: the Admin API rejected it (400 {s['reason']})")
        gateway_rows = [r for r in rows if r["scenario"] == "gateway"]
        if gateway_rows:
            best = max(r["rps"] for r in gateway_rows)
            verdict = "meets" if best >= FLOOR_RPS else "is BELOW"
            notes.append(f"best proxied rate {best:,.0f} req/s ({args.connections} connections) {verdict} "
                         f"the {FLOOR_RPS:,} req/s floor (1 worker)")
        for algorithm in args.algorithms:
            with_checks = [r for r in gateway_rows if r["algorithm"] == algorithm and r["health_checks"]]
            for checked in with_checks:
                plain = next(r for r in gateway_rows if r["algorithm"] == algorithm
                             and r["targets"] == checked["targets"] and not r["health_checks"])
                notes.append(f"{algorithm}, {checked['targets']} targets: with health checks "
                             f"{checked['rps']:,.0f} req/s vs {plain['rps']:,.0f} without "
                             f"({checked['rps'] / plain['rps']:.1%}), p99 {checked['p99_ms']:.2f} vs "
                             f"{plain['p99_ms']:.2f} ms")
            by_targets = {r["targets"]: r for r in gateway_rows
                          if r["algorithm"] == algorithm and not r["health_checks"]}
            if len(by_targets) > 1:
                lo, hi = min(by_targets), max(by_targets)
                a, b = by_targets[lo], by_targets[hi]
                notes.append(f"{algorithm}: {hi} vs {lo} targets: {b['rps'] / a['rps']:.0%} of the req/s, "
                             f"p50 {b['p50_ms']:.2f} vs {a['p50_ms']:.2f} ms, "
                             f"p99 {b['p99_ms']:.2f} vs {a['p99_ms']:.2f} ms "
                             f"(setting up {hi} targets took {b['setup_s']:.1f}s)")
        for note in notes:
            print(f"note: {note}")
        warnings = _gateway_warnings(gw)
        if warnings:
            print("gateway output during the run (log level warn):\n  " + "\n  ".join(warnings))
        report = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "wall_s": round(time.monotonic() - t0, 1),
            "machine": {"cpus": os.cpu_count(), "cpu_model": _cpu_model(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
                         "repeat": args.repeat, "algorithms": args.algorithms, "targets": args.targets,
                         "health": args.health,
                         "workers": 1, "vary_header": VARY_HEADER, "vary_path": args.vary_path,
                         "pinning": {"server_under_test": sorted(server_cpus) if server_cpus else None,
                                     "loadgen": sorted(load_cpus) if load_cpus else None}},
            "results": rows,
            "skipped": skipped,
            "notes": notes,
            "gateway_warnings": warnings,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {_display(args.output)} ({report['wall_s']:.0f}s in all)")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, http.client.HTTPException) as exc:
        print(f"\nError: {exc}", file=sys.stderr)
        if gw is not None and gw.proc.poll() is not None and "gateway output" not in str(exc):
            print(f"gateway exited with status {gw.proc.returncode}\n{gw.log_tail()}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up even if told twice
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.close()
        shutil.rmtree(prefix, ignore_errors=True)


def _gateway_warnings(gw: Gateway) -> list[str]:
    try:
        lines = gw.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line.rstrip() for line in lines if line.strip()][-20:]


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen-child":
        _loadgen_child(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
