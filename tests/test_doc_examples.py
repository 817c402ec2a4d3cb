"""Every shell example in README.md and docs/*.md runs, in order, on a fresh gateway.

The rules, for whoever writes or changes a document:

1. What runs. Fenced blocks opened with ```bash or ```sh. Other fences (```, ```text,
   ```python, ```console, ```toml...) never run: use them for output samples and files.
   A bash/sh block is not run when the last non-blank line before its opening fence is
   ``<!-- doc-test: skip (why) -->`` (invisible on GitHub); the reason is printed. Use it for
   commands that install things, start a gateway, or need a plugin that is not bundled.
2. One document, one session, one gateway. The runnable blocks of a document run in order
   in one bash session (variables, background jobs and the working directory carry over
   from block to block) against a fresh gateway started with ``bin/gateway start`` and the
   default settings. A document may add settings for its gateway with lines
   ``<!-- doc-test: env GATEWAY_KEY=value -->``. Documents run in parallel, each with its own
   gateway, ports and temporary directory; a new docs/*.md is picked up by itself.
3. Rewrites, so documents can say 8000/8001 as users type them. ``localhost:8000`` and
   ``127.0.0.1:8000`` (the proxy) and the same with ``8001`` (the Admin API) get the test
   gateway's free ports; every other number from 9000 to 9999 (a helper server's port, a
   target's port, a pid file named after it) gets a free loopback port of its own (the same
   number, the same port, within a document); ``/tmp/`` becomes a private directory.
4. What fails. A ``curl`` that exits non-zero (cannot connect, times out after 30 s...), or
   answers 5xx or 4xx; any other command that exits non-zero (bash's ERR trap: not commands
   in a condition, nor background jobs); a ``curl`` line that never ran; a session that
   does not reach the end of the document within 90 s. An example that shows an error on
   purpose ends its command line with ``# -> 400`` (any status): then exactly that status
   is required (and an error, a 5xx included, is no longer a failure).
5. Only loopback. A curl whose URL (or proxy) names a host other than localhost, 127.x or
   ::1 is not run; the reason is printed. Where the kernel allows it (``unshare -rn``: user
   and network namespaces), the session and its gateway run in a network namespace that
   has nothing but a loopback interface, so no probe of an outside target and no proxied
   request can leave the machine. Elsewhere every Python process of the session (the
   gateway included) gets a ``sitecustomize`` that refuses to resolve or connect to
   anything but loopback (and keeps uvloop out, whose sockets it could not see), and the
   note says so. Either way: create outside targets freely, never proxy to them (that
   fails), and have helper servers bind 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import free_port

REPO = Path(__file__).resolve().parent.parent
GATEWAY = REPO / "bin" / "gateway"
DOCUMENTS = ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))
SESSION_TIMEOUT = 90.0

RUN_LANGUAGES = {"bash", "sh"}
OPEN_FENCE = re.compile(r"^( {0,3})(`{3,})([^`]*)$")  # CommonMark: no backtick after the fence
SKIP_MARK = re.compile(r"^<!--\s*doc-test:\s*skip\b\s*(.*?)\s*-->$")
ENV_MARK = re.compile(r"^<!--\s*doc-test:\s*env\s+(GATEWAY_[A-Z0-9_]+)=(.*?)\s*-->$")
EXPECT = re.compile(r"\s#\s*->\s*(\d{3})\s*$")
CURL_WORD = re.compile(r"(?:^|[\s;&|(`])curl(?:\s|$)")
GATEWAY_PORT = re.compile(r"\b(localhost|127\.0\.0\.1):(8000|8001)\b")
HELPER_PORT = re.compile(r"(?<![\d.])9\d{3}(?!\d)")

CURL_EXITS = {6: "could not resolve host", 7: "could not connect", 28: "timed out",
              52: "empty reply", 56: "connection broken"}


# ---------------------------------------------------------------- extraction


@dataclass
class Block:
    first_line: int            # line number (1-based) of the block's first content line
    lines: list[str]
    language: str
    skip: str | None = None    # reason, when marked not to run

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and self.skip is None


def parse_markdown(text: str) -> tuple[list[Block], dict[str, str]]:
    """The fenced blocks of a document (all of them, in order) and its ``env`` settings."""
    blocks: list[Block] = []
    env: dict[str, str] = {}
    lines = text.splitlines()
    last_text = ""            # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        line = lines[i]
        m = ENV_MARK.match(line.strip())
        if m:
            env[m[1]] = m[2]
        fence = OPEN_FENCE.match(line)
        if not fence:
            if line.strip():
                last_text = line.strip()
            i += 1
            continue
        indent, ticks = len(fence[1]), fence[2]  # indent: a fence in a list item
        info = (fence[3].split() or [""])[0].lower()
        close = re.compile(r"^ {0,3}" + ticks + r"`*\s*$")
        body: list[str] = []
        i += 1
        start = i + 1
        while i < len(lines) and not close.match(lines[i]):
            text = lines[i]
            body.append(text[indent:] if not text[:indent].strip() else text.lstrip())
            i += 1
        skip = SKIP_MARK.match(last_text)
        blocks.append(Block(start, body, info, (skip[1] or "marked skip") if skip else None))
        last_text = ""
        i += 1  # the closing fence
    return blocks, env


@dataclass
class Script:
    text: str
    doc_lines: dict[int, int]         # script line -> document line
    expect: dict[int, int]            # first script line of a command -> expected status
    curl_lines: dict[int, int]        # first script line of a command with curl -> document line
    skipped: list[str] = field(default_factory=list)


@dataclass
class Ports:
    proxy: int
    admin: int
    helpers: dict[str, int] = field(default_factory=dict)

    def helper(self, number: str) -> int:
        if number not in self.helpers:
            self.helpers[number] = unique_free_port()
        return self.helpers[number]

    def rewrite(self, line: str, tmp: str) -> str:
        line = GATEWAY_PORT.sub(lambda m: f"{m[1]}:{self.proxy if m[2] == '8000' else self.admin}", line)
        line = HELPER_PORT.sub(lambda m: str(self.helper(m[0])), line)
        return line.replace("/tmp/", tmp.rstrip("/") + "/")


PREAMBLE = r"""# generated by tests/test_doc_examples.py from {doc}
cd "$DOC_TEST_CWD" || exit 99
curl() {{ DOC_TEST_LINE=${{BASH_LINENO[0]}} command curl "$@"; }}
trap '__doc_test_rc=$?; case $BASH_COMMAND in *"command curl"*) ;; *) printf "%s\t%s\t%s\n" "$LINENO" "$__doc_test_rc" "$BASH_COMMAND" >> "$DOC_TEST_ERRORS";; esac' ERR
"""
TRAILER = ': > "$DOC_TEST_DONE"\n'


def build_script(doc: str, blocks: list[Block], ports: Ports, tmp: str) -> Script:
    """One bash script with the document's runnable blocks, in order."""
    out: list[str] = PREAMBLE.format(doc=doc).splitlines()
    script = Script("", {}, {}, {})
    for block in blocks:
        if block.language not in RUN_LANGUAGES:
            continue
        if block.skip is not None:
            script.skipped.append(f"{doc}:{block.first_line - 1}: block not run: {block.skip}")
            continue
        out.append(f"# --- {doc}:{block.first_line}")
        first = None  # (script line, doc line) of the command being continued
        code = ""
        for offset, raw in enumerate(block.lines):
            out.append(ports.rewrite(raw, tmp))
            here, doc_line = len(out), block.first_line + offset
            script.doc_lines[here] = doc_line
            if first is None:
                first, code = (here, doc_line), ""
            code += " " + re.split(r"(?:^|\s)#", raw, maxsplit=1)[0]
            if raw.rstrip().endswith("\\") and not raw.lstrip().startswith("#"):
                continue
            expected = EXPECT.search(raw)
            if expected:
                script.expect[first[0]] = int(expected[1])
            if CURL_WORD.search(code):
                script.curl_lines[first[0]] = first[1]
            first = None
    out.append(TRAILER.rstrip("\n"))
    script.text = "\n".join(out) + "\n"
    return script


# ---------------------------------------------------------------- the session

#: `curl` as the sessions see it: records what each call got, never calls another host
CURL_WRAPPER = r'''#!{python} -IS
import ipaddress, json, os, subprocess, sys, tempfile
from urllib.parse import urlsplit

SHORT_VALUE = set("dHXowuFDeAbcKmrTxECQtzUyY")
LONG_VALUE = {{"--data", "--data-raw", "--data-binary", "--data-urlencode", "--data-ascii", "--json",
              "--header", "--request", "--output", "--write-out", "--user", "--form", "--form-string",
              "--dump-header", "--max-time", "--connect-timeout", "--url", "--cookie", "--cookie-jar",
              "--user-agent", "--referer", "--proxy", "--preproxy", "--resolve", "--connect-to",
              "--cacert", "--capath", "--cert", "--key", "--retry", "--retry-delay", "--retry-max-time",
              "--unix-socket", "--upload-file", "--range", "--config", "--oauth2-bearer", "--limit-rate",
              "--interface", "--max-filesize", "--expect100-timeout", "--stderr", "--trace",
              "--trace-ascii", "--noproxy", "--proxy-user", "--socks5", "--socks5-hostname"}}


def targets(args):
    urls, hosts = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            urls.extend(args[i + 1:])
            break
        if a.startswith("--"):
            if a in LONG_VALUE and i + 1 < len(args):
                i += 1
                if a == "--url":
                    urls.append(args[i])
                elif a in ("--proxy", "--preproxy", "--socks5", "--socks5-hostname"):
                    hosts.append(args[i])
                elif a in ("--resolve", "--connect-to"):
                    hosts.append("unchecked." + a[2:] + ".invalid")
        elif a.startswith("-") and len(a) > 1:
            for j, ch in enumerate(a[1:], 1):
                if ch in SHORT_VALUE:
                    value = a[j + 1:]
                    if not value and i + 1 < len(args):
                        i += 1
                        value = args[i]
                    if ch == "x":
                        hosts.append(value)
                    break
        else:
            urls.append(a)
        i += 1
    return urls, hosts


def host(url):
    if "://" not in url:
        url = "http://" + url
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def loopback(name):
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def record(entry):
    with open(os.environ["DOC_TEST_CALLS"], "a") as f:
        f.write(json.dumps(entry) + "\n")


args = sys.argv[1:]
entry = {{"line": int(os.environ.get("DOC_TEST_LINE") or 0), "argv": args}}
urls, hosts = targets(args)
foreign = sorted({{host(u) or u for u in urls + hosts if not loopback(host(u))}})
if foreign:
    entry["skipped"] = "names a host other than localhost: " + ", ".join(foreign)
    print("doc-test: curl not run: " + entry["skipped"], file=sys.stderr)
    record(entry)
    sys.exit(0)
own_dump = any(a in ("-D", "--dump-header") for a in args)
fd, dump = tempfile.mkstemp(prefix="headers-", dir=os.environ["DOC_TEST_WORK"])
os.close(fd)
command = [os.environ["DOC_TEST_REAL_CURL"], "-q", "--noproxy", "*", "--no-progress-meter", "--max-time", "30"]
command += ([] if own_dump else ["-D", dump]) + args
try:
    entry["exit"] = subprocess.call(command)
finally:
    statuses = []
    with open(dump, "rb") as f:
        for line in f.read().decode("latin-1").splitlines():
            parts = line.split()
            if len(parts) > 1 and parts[0].startswith("HTTP/") and parts[1].isdigit() and not parts[1].startswith("1"):
                statuses.append(int(parts[1]))
    os.unlink(dump)
    entry["statuses"] = statuses
    record(entry)
sys.exit(entry["exit"])
'''

#: brings up the loopback interface of a fresh network namespace, checks it is the only one
LOOPBACK_UP = r"""
import fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
names = [name for _, name in socket.if_nameindex()]
sys.exit(0 if names == ["lo"] else f"interfaces other than lo: {names}")
"""

#: without a network namespace: loaded by every Python of the session, the gateway included
LOOPBACK_GUARD = r"""
# Keeps this process on loopback (tests/test_doc_examples.py, without a network namespace).
import errno
import ipaddress
import socket
import sys

DOC_TEST_GUARD = True


def _loopback(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = host.strip("[]").split("%")[0]
    if host.lower() in ("", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        raise socket.gaierror(socket.EAI_NONAME, f"doc-test: {host} is not a loopback host")
    return _getaddrinfo(host, *args, **kwargs)


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        raise OSError(errno.ENETUNREACH, f"doc-test: {address[0]} is not a loopback address")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


class _NoUvloop:
    def find_spec(self, name, path=None, target=None):
        if name == "uvloop" or name.startswith("uvloop."):
            raise ImportError("doc-test: uvloop is off without a network namespace")
        return None


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
sys.meta_path.insert(0, _NoUvloop())
"""

#: runs inside the namespace (when there is one): the gateway, then the document's session
DRIVER = r"""set -u
if [ "$DOC_TEST_NETNS" = 1 ]; then
    "$DOC_TEST_PYTHON" -IS -c "$DOC_TEST_LOOPBACK_UP" || { echo "doc-test: no loopback in the namespace" >&2; exit 97; }
else
    "$DOC_TEST_PYTHON" -c "import sitecustomize, uvloop" 2>/dev/null && { echo "doc-test: the loopback guard is not loaded" >&2; exit 96; }
    "$DOC_TEST_PYTHON" -c "import sitecustomize; assert sitecustomize.DOC_TEST_GUARD" || { echo "doc-test: the loopback guard is not loaded" >&2; exit 96; }
fi
"$DOC_TEST_GATEWAY" start > "$DOC_TEST_WORK/gateway.log" 2>&1 &
gw=$!
up=0
for i in $(seq 1 300); do
    if "$DOC_TEST_REAL_CURL" -q -s -o /dev/null --noproxy '*' "http://127.0.0.1:$DOC_TEST_ADMIN_PORT/status" &&
       "$DOC_TEST_REAL_CURL" -q -s -o /dev/null --noproxy '*' "http://127.0.0.1:$DOC_TEST_PROXY_PORT/"; then
        up=1
        break
    fi
    kill -0 "$gw" 2>/dev/null || break
    sleep 0.1
done
if [ "$up" != 1 ]; then echo "doc-test: the gateway did not start" >&2; exit 98; fi
bash --noprofile --norc "$DOC_TEST_WORK/doc.sh" > "$DOC_TEST_WORK/session.log" 2>&1 < /dev/null
rc=$?
kill -TERM "$gw" 2>/dev/null
exit $rc
"""

_used_ports: set[int] = set()


def unique_free_port() -> int:
    """A free loopback port not handed out before in this run (documents run side by side)."""
    while True:
        port = free_port()
        if port not in _used_ports:
            _used_ports.add(port)
            return port


def network_namespace_available() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        r = subprocess.run(["unshare", "-rn", sys.executable, "-IS", "-c", LOOPBACK_UP],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@dataclass
class Session:
    """One document's run: its files, its process group, and what it found."""

    doc: str
    work: Path
    script: Script
    netns: bool
    env: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    started_wall: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    elapsed: float | None = None

    @classmethod
    def prepare(cls, doc: str, text: str, work: Path, netns: bool) -> "Session | None":
        blocks, doc_env = parse_markdown(text)
        if not any(b.language in RUN_LANGUAGES for b in blocks):
            return None
        for sub in ("cwd", "tmp", "bin", "guard"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        if not netns:
            (work / "guard" / "sitecustomize.py").write_text(LOOPBACK_GUARD)
        ports = Ports(unique_free_port(), unique_free_port())
        script = build_script(doc, blocks, ports, str(work / "tmp"))
        (work / "doc.sh").write_text(script.text)
        (work / "driver.sh").write_text(DRIVER)
        wrapper = work / "bin" / "curl"
        wrapper.write_text(CURL_WRAPPER.format(python=sys.executable))
        wrapper.chmod(0o755)
        session = cls(doc, work, script, netns)
        session.env = session._environment(ports, doc_env)
        return session

    def _environment(self, ports: Ports, doc_env: dict[str, str]) -> dict[str, str]:
        proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GATEWAY_", "DOC_TEST_")) and k.lower() not in proxies}
        work = self.work
        env.update(
            PATH=os.pathsep.join([str(work / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")]),
            GATEWAY_PREFIX=str(work / "servroot"),
            GATEWAY_PROXY_LISTEN=f"127.0.0.1:{ports.proxy}",
            GATEWAY_ADMIN_LISTEN=f"127.0.0.1:{ports.admin}",
            DOC_TEST_WORK=str(work), DOC_TEST_CWD=str(work / "cwd"),
            DOC_TEST_CALLS=str(work / "calls.jsonl"), DOC_TEST_ERRORS=str(work / "errors.tsv"),
            DOC_TEST_DONE=str(work / "done"), DOC_TEST_REAL_CURL=REAL_CURL or "curl",
            DOC_TEST_PYTHON=sys.executable, DOC_TEST_GATEWAY=str(GATEWAY),
            DOC_TEST_LOOPBACK_UP=LOOPBACK_UP, DOC_TEST_NETNS="1" if self.netns else "0",
            DOC_TEST_PROXY_PORT=str(ports.proxy), DOC_TEST_ADMIN_PORT=str(ports.admin),
        )
        if not self.netns:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "guard"), env.get("PYTHONPATH")]))
        env.update(doc_env)
        return env

    def start(self) -> None:
        command = ["bash", "--noprofile", "--norc", str(self.work / "driver.sh")]
        if self.netns:
            command = ["unshare", "-rn", *command]
        self.started, self.started_wall = time.monotonic(), time.time()
        self.proc = subprocess.Popen(command, cwd=self.work, env=self.env, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=open(self.work / "driver.log", "wb"),
                                     stderr=subprocess.STDOUT)

    def wait(self) -> int | None:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=max(0.0, self.started + SESSION_TIMEOUT - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = None
        if self.elapsed is None:
            done = self.work / "done"
            end = done.stat().st_mtime if done.exists() else time.time()
            self.elapsed = end - self.started_wall
        self.stop()
        return rc

    def stop(self) -> None:
        """End the whole process group: the gateway, helper servers, background jobs."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._group_alive(pgid):
                time.sleep(0.05)
            if not self._group_alive(pgid):
                break
        self.proc.wait()

    def _group_alive(self, pgid: int) -> bool:
        """Whether a process of the group still runs (zombies do not count: an init that does
        not reap would otherwise keep the group "alive")."""
        assert self.proc is not None
        self.proc.poll()
        proc_dir = Path("/proc")
        if not proc_dir.is_dir():
            try:
                os.killpg(pgid, 0)
                return True
            except ProcessLookupError:
                return False
        for stat in proc_dir.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                return True
        return False

    def findings(self, rc: int | None) -> tuple[list[str], list[str]]:
        """(failures, notes) of a finished session."""
        doc, script = self.doc, self.script
        failures: list[str] = []
        notes: list[str] = list(script.skipped)

        def where(line: int) -> str:
            return f"{doc}:{script.doc_lines.get(line, '?')}"

        if rc is None:
            failures.append(f"{doc}: the session did not finish within {SESSION_TIMEOUT:.0f} s")
        elif rc == 97:
            failures.append(f"{doc}: could not bring up loopback in the network namespace")
        elif rc == 96:
            failures.append(f"{doc}: the loopback guard (sitecustomize) did not load")
        elif rc == 98:
            failures.append(f"{doc}: the gateway did not start")
        elif not (self.work / "done").exists():
            failures.append(f"{doc}: the session stopped before the end of the document (exit {rc})")
        ran: set[int] = set()
        calls = self.work / "calls.jsonl"
        for raw in (calls.read_text().splitlines() if calls.exists() else []):
            call = json.loads(raw)
            line, argv = call["line"], call["argv"]
            ran.add(line)
            shown = "curl " + shlex.join(argv)
            if "skipped" in call:
                notes.append(f"{where(line)}: curl not run ({call['skipped']}): {shown}")
                continue
            expected = script.expect.get(line)
            statuses, code = call.get("statuses", []), call.get("exit")
            if code not in (0, None) and not (code == 23 and statuses):  # 23: a pipe closed early
                failures.append(f"{where(line)}: curl exited {code} ({CURL_EXITS.get(code, 'error')}): {shown}")
                continue
            for status in statuses:
                if expected is not None:
                    if status != expected:
                        failures.append(f"{where(line)}: expected {expected}, got {status}: {shown}")
                elif status >= 500:
                    failures.append(f"{where(line)}: answered {status}: {shown}")
                elif status >= 400:
                    failures.append(f"{where(line)}: answered {status} (end the line with '# -> {status}' "
                                    f"if the example shows that error on purpose): {shown}")
            if expected is not None and not statuses:
                failures.append(f"{where(line)}: expected {expected}, got no HTTP answer: {shown}")
        errors = self.work / "errors.tsv"
        for raw in (errors.read_text().splitlines() if errors.exists() else []):
            line_text, code_text, command = (raw.split("\t", 2) + ["", ""])[:3]
            failures.append(f"{where(int(line_text or 0))}: exited {code_text}: {command} (a block that is "
                            "not meant to run here needs <!-- doc-test: skip (why) --> before it)")
        for line, doc_line in sorted(script.curl_lines.items()):
            if line not in ran:
                failures.append(f"{doc}:{doc_line}: this curl command never ran")
        if not self.netns:
            notes.append("no network namespace here (unshare -rn): the URL rule and the sitecustomize guard "
                         "kept traffic on loopback")
        return failures, notes

    def logs(self) -> str:
        parts = []
        for name in ("session.log", "gateway.log", "driver.log"):
            path = self.work / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-40:]
                parts.append(f"--- {name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)


REAL_CURL = shutil.which("curl")
SELF_TEST = "self-test.md"


def _selected(request: pytest.FixtureRequest) -> set[str]:
    """The documents whose tests this run will call (all of them, unless -k chose a few)."""
    docs: set[str] = set()
    for item in request.session.items:
        if getattr(item, "module", None) is sys.modules[__name__]:
            callspec = getattr(item, "callspec", None)
            if callspec is not None and "doc" in callspec.params:
                docs.add(callspec.params["doc"])
            elif item.name == "test_runner_catches_broken_examples":
                docs.add(SELF_TEST)
    return docs


@pytest.fixture(scope="module")
def sessions(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Every selected document's session, all started at once (they take as long as the slowest)."""
    if REAL_CURL is None or shutil.which("bash") is None:
        pytest.skip("the documentation examples need bash and curl")
    netns = network_namespace_available()
    wanted = _selected(request)
    texts = {doc: (REPO / doc).read_text() for doc in DOCUMENTS if doc in wanted}
    if SELF_TEST in wanted:
        texts[SELF_TEST] = SELF_TEST_DOC
    started: dict[str, Session | None] = {}
    try:
        for doc, text in texts.items():
            work = tmp_path_factory.mktemp(re.sub(r"\W", "_", doc))
            session = Session.prepare(doc, text, work, netns)
            if session is not None:
                session.start()
            started[doc] = session
        yield started
    finally:
        for session in started.values():
            if session is not None:
                session.stop()


def _run(sessions: dict[str, Session | None], doc: str) -> tuple[Session, list[str], list[str]]:
    session = sessions[doc]
    if session is None:
        pytest.skip(f"{doc} has no ```bash or ```sh blocks")
    failures, notes = session.findings(session.wait())
    print(f"{doc}: {len(session.script.curl_lines)} curl commands, {session.elapsed:.1f} s, "
          f"network namespace: {'yes' if session.netns else 'no'}")
    for note in notes:
        print("  " + note)
    return session, failures, notes


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_examples_run_as_written(sessions: dict[str, Session | None], doc: str) -> None:
    session, failures, _ = _run(sessions, doc)
    assert not failures, "\n".join(failures) + "\n" + session.logs()


# ---------------------------------------------------------------- the runner's own checks

SELF_TEST_DOC = """\
# A document that breaks every rule once

<!-- doc-test: env GATEWAY_DB_UPDATE_FREQUENCY=2 -->

```
curl http://localhost:8001/never-run-plain-fence
```

```text
curl http://localhost:8001/never-run-text-fence
```

<!-- doc-test: skip (shown, not run) -->
```bash
curl http://localhost:8001/never-run-marked
```

```bash
sleep 30 &
NAME=u1
echo kept > /tmp/private-file
curl -s -X POST http://localhost:8001/upstreams --data name=u1
curl -s -X POST http://localhost:8001/upstreams --data name=u1 --data tags=dup
curl -s -X POST http://localhost:8001/upstreams --data name=u2 \\
  --data algorithm=no-such-thing   # -> 400
curl -s http://localhost:8001/upstreams/u1   # -> 404
curl -s https://api.openai.com/v1/models
curl -s -x http://proxy.example.com:3128 http://localhost:8001/status
curl -s http://localhost:9001/
false
if false; then curl -s http://localhost:8001/in-a-branch-never-taken; fi
```

- a fence in a list item, indented:

  ```sh
  kill %1
  curl -s "http://localhost:8001/upstreams/${NAME:-variable-lost}"
  for i in 1 2; do curl -s -o /dev/null http://localhost:8000/no-route; done
  ```
"""


def _line_of(text: str, needle: str) -> int:
    """The number of the first line that contains ``needle`` (or is it, with ``=`` before it)."""
    if needle.startswith("="):
        return next(n for n, line in enumerate(text.splitlines(), 1) if line == needle[1:])
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_runner_rules_extraction() -> None:
    blocks, env = parse_markdown(SELF_TEST_DOC)
    assert parse_markdown("``` ```bash ``` is inline code\n")[0] == []
    assert env == {"GATEWAY_DB_UPDATE_FREQUENCY": "2"}
    assert [(b.language, b.runs) for b in blocks] == [("", False), ("text", False), ("bash", False),
                                                      ("bash", True), ("sh", True)]
    assert blocks[2].skip == "(shown, not run)"
    assert blocks[4].lines[0] == "kill %1"  # indented fence: indentation removed
    assert parse_markdown("```bash\nfor i in 1; do\n  echo $i\ndone\n```\n")[0][0].lines[1] == "  echo $i"
    ports = Ports(18000, 18001)
    script = build_script("x.md", blocks, ports, "/private")
    assert "never-run" not in script.text
    assert "http://localhost:18001/upstreams" in script.text and "localhost:8001" not in script.text
    assert f"http://localhost:{ports.helpers['9001']}/" in script.text
    assert "echo kept > /private/private-file" in script.text
    doc_line = {v: k for k, v in script.doc_lines.items()}
    assert script.expect == {doc_line[_line_of(SELF_TEST_DOC, "name=u2")]: 400,
                             doc_line[_line_of(SELF_TEST_DOC, "upstreams/u1   #")]: 404}
    assert len(script.curl_lines) == 10


def test_runner_catches_broken_examples(sessions: dict[str, Session | None]) -> None:
    """The runner itself: each broken line of the self-test document is reported, nothing else."""
    session, failures, notes = _run(sessions, SELF_TEST)
    text = SELF_TEST_DOC
    reported = sorted(int(m[1]) for f in failures if (m := re.match(rf"{SELF_TEST}:(\d+): ", f)))
    expected = sorted(_line_of(text, needle) for needle in (
        "tags=dup",                     # 409: an unexpected 4xx
        "upstreams/u1   #",             # 200 where 404 was announced
        "localhost:9001",               # nothing listens: connection refused
        "=false",                       # a plain command that fails
        "in-a-branch-never-taken",      # a curl that never ran
        "no-route",                     # a 404 from the proxy (twice, in a loop)
        "no-route",
    ))
    assert reported == expected, "\n".join(failures) + "\n" + session.logs()
    assert any("api.openai.com" in n and "not run" in n for n in notes), notes
    assert any("proxy.example.com" in n for n in notes), notes
    assert any("block not run: (shown, not run)" in n for n in notes), notes
    assert (session.work / "tmp" / "private-file").read_text() == "kept\n"
    assert "variable-lost" not in (session.work / "calls.jsonl").read_text()
