"""Consistent hashing: Kong's hash values, a stable weighted ring, minimal disruption."""
from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from lb_fakes import ctx, never, skipping, target, targets

from kong_py_plugins.load_balancing import consistent_hashing as ch_module
from kong_py_plugins.load_balancing.consistent_hashing import (
    HASH_VAR, ConsistentHashing, Ring, _next_other, hash_value, stable_hash)

KEYS = [f"user-{i}" for i in range(10_000)]


def upstream(**fields):
    return {"hash_on": "header", "hash_on_header": "X-User", "slots": 10000, **fields}


def mapping(algorithm, keys=KEYS, skip=never):
    return {k: algorithm.lookup(k, skip).target for k in keys}


def pool(n, weight=100):
    return [target(f"10.1.{i // 250}.{i % 250 + 1}:8080", weight) for i in range(n)]


# -- the value to hash ----------------------------------------------------------

def test_hash_on_none_has_no_value():
    assert hash_value({"hash_on": "none"}, ctx(headers=[("X-User", "a")])) is None
    assert hash_value({}, ctx()) is None
    assert hash_value(upstream(), None) is None


def test_consumer_then_credential():
    up = {"hash_on": "consumer", "hash_fallback": "ip"}
    assert hash_value(up, ctx(consumer={"id": "c-1", "username": "x"})) == "c-1"
    c = ctx(client_ip="198.51.100.7")
    assert hash_value(up, c) == "198.51.100.7"  # no consumer: the fallback
    c.vars["authenticated_credential"] = {"id": "cred-9"}
    assert hash_value(up, c) == "cred-9"


def test_ip():
    assert hash_value({"hash_on": "ip"}, ctx(client_ip="2001:db8::1")) == "2001:db8::1"


def test_header_repeated_values_are_joined():
    up = upstream()
    assert hash_value(up, ctx(headers=[("x-user", "alice")])) == "alice"
    assert hash_value(up, ctx(headers=[("X-User", "a"), ("X-Other", "z"), ("X-USER", "b")])) == "a,b"
    assert hash_value(up, ctx(headers=[("X-User", "")])) == ""  # present, if empty (as in Kong)
    assert hash_value(up, ctx()) is None


def test_header_falls_back_to_another_header():
    up = upstream(hash_fallback="header", hash_fallback_header="X-Team")
    assert hash_value(up, ctx(headers=[("X-Team", "red")])) == "red"
    assert hash_value(up, ctx(headers=[("X-Team", "red"), ("X-User", "u")])) == "u"
    assert hash_value(up, ctx()) is None


def test_cookie_present():
    up = {"hash_on": "cookie", "hash_on_cookie": "sticky", "hash_on_cookie_path": "/app"}
    c = ctx(headers=[("Cookie", "a=1; sticky=abc; b=2")])
    assert hash_value(up, c) == "abc"
    assert c.extra_response_headers is None
    c = ctx(headers=[("Cookie", "a=1"), ("Cookie", "sticky=second")])
    assert hash_value(up, c) == "second"


def test_cookie_absent_is_made_up_and_set_on_the_response():
    up = {"hash_on": "cookie", "hash_on_cookie": "sticky", "hash_on_cookie_path": "/app"}
    c = ctx(headers=[("Cookie", "stickyx=1")])
    value = hash_value(up, c, random.Random(1))
    assert value == hash_value(up, ctx(), random.Random(1))  # from the injected RNG
    assert len(value) == 36 and value.count("-") == 4
    assert c.extra_response_headers == [("Set-Cookie", f"sticky={value}; Path=/app; Same-Site=Lax; HttpOnly")]


def test_cookie_is_made_up_once_per_request_even_with_retries():
    ts = pool(3)
    ch = ConsistentHashing({"hash_on": "cookie", "hash_on_cookie": "s", "slots": 1000}, ts, rng=random.Random(5))
    c = ctx()
    first = ch.pick(c, never)
    second = ch.pick(c, lambda t: t is first)
    assert second is not first
    assert len(c.extra_response_headers) == 1
    value = c.extra_response_headers[0][1].split(";")[0].split("=", 1)[1]
    # the client comes back with the cookie: same target as its first try
    assert ch.pick(ctx(headers=[("Cookie", f"s={value}")]), never) is first


def test_path():
    assert hash_value({"hash_on": "path"}, ctx(path="/a/b")) == "/a/b"


def test_query_arg_single_repeated_and_bare():
    up = {"hash_on": "query_arg", "hash_on_query_arg": "id"}
    assert hash_value(up, ctx(query=[("id", "7"), ("x", "1")])) == "7"
    assert hash_value(up, ctx(query=[("id", "b"), ("id", "c"), ("id", "a")])) == "a,b,c"
    assert hash_value(up, ctx(query="id&x=1")) == "true"  # Kong: a bare argument is true
    assert hash_value(up, ctx(query="id=")) == ""
    assert hash_value(up, ctx(query="i%64=hello+world")) == "hello world"
    assert hash_value(up, ctx(query="x=1")) is None
    up = {"hash_on": "query_arg", "hash_on_query_arg": "id", "hash_fallback": "query_arg",
          "hash_fallback_query_arg": "sid"}
    assert hash_value(up, ctx(query="sid=9")) == "9"


def test_uri_capture():
    up = {"hash_on": "uri_capture", "hash_on_uri_capture": "tenant", "hash_fallback": "uri_capture",
          "hash_fallback_uri_capture": "1"}
    assert hash_value(up, ctx(captures={"tenant": "acme", "1": "acme"})) == "acme"
    assert hash_value(up, ctx(captures={"1": "x"})) == "x"
    assert hash_value(up, ctx()) is None


def test_value_is_computed_once_and_a_plugin_may_set_it():
    ts = pool(5)
    ch = ConsistentHashing(upstream(), ts)
    c = ctx(headers=[("X-User", "alice")])
    picked = ch.pick(c, never)
    assert c.vars[HASH_VAR] == "alice" and picked is ch.lookup("alice")
    c = ctx(headers=[("X-User", "alice")])
    c.vars[HASH_VAR] = "bob"  # set by a plugin before the balancer ran
    assert ch.pick(c, never) is ch.lookup("bob")


# -- no value: weighted round-robin ---------------------------------------------------

def test_hash_on_none_is_weighted_round_robin():
    ts = targets([10, 10, 5])
    ch = ConsistentHashing({"hash_on": "none", "slots": 100}, ts)
    counts = Counter(ch.pick(ctx(), never).target for _ in range(250))
    assert counts == {ts[0].target: 100, ts[1].target: 100, ts[2].target: 50}
    assert ch.pick(None, never) is not None


def test_requests_without_a_value_are_spread_by_weight():
    ts = targets([70, 30])
    ch = ConsistentHashing(upstream(), ts)
    counts = Counter(ch.pick(ctx(), never).target for _ in range(100))
    assert counts == {ts[0].target: 70, ts[1].target: 30}


# -- the ring ---------------------------------------------------------------------------

def test_ring_has_slots_points_split_by_weight():
    ts = [target("a:80", 100), target("b:80", 300), target("c:80", 600)]
    ch = ConsistentHashing(upstream(slots=20000), ts)
    assert len(ch.ring.owner) == 20000
    points = Counter(ch.targets[o].target for o in ch.ring.owner)
    assert points["a:80"] == pytest.approx(2000, rel=0.1)
    assert points["b:80"] == pytest.approx(6000, rel=0.05)
    assert points["c:80"] == pytest.approx(12000, rel=0.05)
    keys = Counter(mapping(ch).values())
    assert keys["a:80"] == pytest.approx(1000, rel=0.2)
    assert keys["c:80"] == pytest.approx(6000, rel=0.1)


def test_every_target_gets_at_least_one_point():
    ts = [target("big:80", 65535), target("tiny:80", 1), target("tiny2:80", 1)]
    ch = ConsistentHashing(upstream(slots=10), ts)
    assert set(Counter(ch.targets[o].target for o in ch.ring.owner)) == {"big:80", "tiny:80", "tiny2:80"}


def test_mapping_does_not_depend_on_target_order_or_instance():
    ts = pool(7)
    first = mapping(ConsistentHashing(upstream(), ts))
    ch_module._rings.clear()
    assert mapping(ConsistentHashing(upstream(), list(reversed(ts)))) == first


def test_mapping_is_the_same_in_another_process():
    """Same key, same target across restarts and workers (no per-process hash seed)."""
    here = Path(__file__).parent
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from lb_fakes import target\n"
        "from kong_py_plugins.load_balancing.consistent_hashing import ConsistentHashing\n"
        "ts = [target('10.0.0.1:80'), target('10.0.0.2:80'), target('10.0.0.3:80', 50)]\n"
        "ch = ConsistentHashing({'slots': 10000}, ts)\n"
        "print(','.join(ch.lookup(f'user-{i}').target for i in range(300)))\n" % str(here))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123"}).stdout.strip()
    ts = [target("10.0.0.1:80"), target("10.0.0.2:80"), target("10.0.0.3:80", 50)]
    ch = ConsistentHashing({"slots": 10000}, ts)
    assert out == ",".join(ch.lookup(f"user-{i}").target for i in range(300))


def test_golden_mapping():
    """Pins the ring: a change here moves every user's affinity on upgrade."""
    assert stable_hash("alice") == 5614559425216174729
    ts = [target("10.0.0.1:80"), target("10.0.0.2:80"), target("10.0.0.3:80", 50)]
    ch = ConsistentHashing(upstream(), ts)
    assert {k: ch.lookup(k).target for k in ("alice", "bob", "carol", "dave", "eve", "user-1", "user-2")} == {
        "alice": "10.0.0.3:80", "bob": "10.0.0.3:80", "carol": "10.0.0.2:80", "dave": "10.0.0.3:80",
        "eve": "10.0.0.1:80", "user-1": "10.0.0.1:80", "user-2": "10.0.0.2:80"}


@pytest.mark.parametrize("n", [1, 2, 4, 9, 20])
def test_adding_a_target_moves_about_one_in_n_plus_one_keys_only_to_it(n):
    ts = pool(n + 1)
    before = mapping(ConsistentHashing(upstream(), ts[:n]))
    after = mapping(ConsistentHashing(upstream(), ts))
    new = ts[n].target
    moved = [k for k in KEYS if before[k] != after[k]]
    # no key moves between two targets that did not change
    assert all(after[k] == new for k in moved)
    assert len(moved) / len(KEYS) == pytest.approx(1 / (n + 1), rel=0.15, abs=0.005)
    # removing it again restores every key
    assert mapping(ConsistentHashing(upstream(), ts[:n])) == before


def test_removing_a_target_moves_only_its_keys():
    ts = pool(6)
    before = mapping(ConsistentHashing(upstream(), ts))
    gone = ts[2].target
    after = mapping(ConsistentHashing(upstream(), ts[:2] + ts[3:]))
    for k in KEYS:
        if before[k] != gone:
            assert after[k] == before[k]
    assert Counter(after[k] for k in KEYS if before[k] == gone).keys() <= {t.target for t in ts} - {gone}


def test_changing_a_weight_moves_keys_only_to_or_from_that_target():
    ts = pool(5)
    before = mapping(ConsistentHashing(upstream(), ts))
    heavier = [target(t.target, 300 if i == 1 else 100) for i, t in enumerate(ts)]
    after = mapping(ConsistentHashing(upstream(), heavier))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(after[k] == ts[1].target for k in moved)
    # a share of 3/7 instead of 1/5
    assert Counter(after.values())[ts[1].target] / len(KEYS) == pytest.approx(3 / 7, abs=0.04)


def test_unavailable_target_keys_move_to_the_next_points_and_come_back():
    ts = pool(5)
    ch = ConsistentHashing(upstream(), ts)
    before = mapping(ch)
    down = ts[3].target
    during = mapping(ch, skip=skipping(down))
    assert down not in during.values()
    for k in KEYS:
        if before[k] != down:
            assert during[k] == before[k]
    spread = Counter(during[k] for k in KEYS if before[k] == down)
    assert len(spread) == 4  # spread over the others, not dumped on one
    assert mapping(ch) == before  # it recovered: its keys are back


def test_retry_goes_to_another_target_then_none_when_all_tried():
    ts = pool(3)
    ch = ConsistentHashing(upstream(), ts)
    c = ctx(headers=[("X-User", "alice")])
    tried = []
    for _ in range(3):
        t = ch.pick(c, lambda x: x in tried)
        assert t is not None and t not in tried
        tried.append(t)
    assert ch.pick(c, lambda x: x in tried) is None


def test_walk_fallback_gives_the_same_answer_as_walking():
    rng = random.Random(3)
    ts = pool(200, weight=10)
    ch = ConsistentHashing(upstream(slots=5000), ts)
    limited = ConsistentHashing(upstream(slots=5000), ts)
    limited.WALK_LIMIT = 2
    unlimited = ConsistentHashing(upstream(slots=5000), ts)
    unlimited.WALK_LIMIT = 10**9
    for _ in range(20):
        down = {t.target for t in rng.sample(ts, rng.randint(0, 199))}
        skip = skipping(*down)
        keys = KEYS[:300]
        expected = mapping(unlimited, keys, skip)
        assert mapping(limited, keys, skip) == expected
        assert mapping(ch, keys, skip) == expected
    assert ch.lookup("x", lambda t: True) is None


def test_next_other_owner_table():
    rng = random.Random(11)
    for _ in range(200):
        owner = [rng.randint(0, 2) for _ in range(rng.randint(1, 12))]
        result = _next_other(owner)
        for p, q in enumerate(result):
            if len(set(owner)) == 1:
                assert q == p
                continue
            expected = next((p + d) % len(owner) for d in range(1, len(owner) + 1)
                            if owner[(p + d) % len(owner)] != owner[p])
            assert q == expected


def test_ring_cache_reuses_rings():
    ts = pool(4)
    ring = ConsistentHashing(upstream(), ts).ring
    assert ConsistentHashing(upstream(), [target(t.target) for t in ts]).ring is ring
    assert ConsistentHashing(upstream(slots=5000), ts).ring is not ring
    assert isinstance(ring, Ring)


def test_single_target_and_no_target():
    only = target("only:80")
    ch = ConsistentHashing(upstream(), [only])
    assert ch.pick(ctx(headers=[("X-User", "a")]), never) is only
    assert ch.pick(ctx(headers=[("X-User", "a")]), lambda t: True) is None
    empty = ConsistentHashing(upstream(), [])
    assert empty.pick(ctx(headers=[("X-User", "a")]), never) is None
    assert empty.pick(ctx(), never) is None


def test_hash_on_none_builds_no_ring_unless_a_plugin_sets_a_key():
    ts = pool(3)
    ch = ConsistentHashing({"hash_on": "none", "slots": 1000}, ts)
    assert ch.ring is None
    c = ctx()
    c.vars[HASH_VAR] = "alice"
    picked = ch.pick(c, never)
    assert ch.ring is not None and picked is ch.lookup("alice")
