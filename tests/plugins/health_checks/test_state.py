"""The health state machine on its own: counter rules, ejection times, recovery."""
from __future__ import annotations

from kong_py.schemas.healthchecks import Healthchecks
from kong_py_plugins.health_checks.schema import compile_settings
from kong_py_plugins.health_checks.state import Health, half_open, observe, set_manually


def settings(**passive_unhealthy):
    record = Healthchecks().model_dump(mode="json")
    record["passive"]["unhealthy"].update(passive_unhealthy)
    record["passive"]["recovery"].update(base_ejection_time=10, max_ejection_time=35)
    return compile_settings(record)


def test_a_limit_of_zero_turns_that_counter_off():
    s = settings(http_failures=2)
    h = Health()
    for _ in range(5):
        assert observe(h, s, "passive", "timeouts", "timed out", 0, 0) is None
    assert h.timeouts == 0 and h.health == "HEALTHY"


def test_a_success_zeroes_failures_and_a_failure_zeroes_successes():
    s = settings(http_failures=3, tcp_failures=3)
    h = Health()
    observe(h, s, "passive", "http_failures", "status 500", 0, 0)
    observe(h, s, "passive", "tcp_failures", "connection failed", 0, 0)
    assert (h.http_failures, h.tcp_failures) == (1, 1)
    observe(h, s, "passive", "success", "", 0, 0)
    assert (h.http_failures, h.tcp_failures) == (0, 0)


def test_ejections_double_up_to_the_maximum_and_are_forgiven_after_a_healthy_spell():
    s = settings(http_failures=1)
    h = Health()
    clock = 100.0
    lengths = []
    for _ in range(4):
        change = observe(h, s, "passive", "http_failures", "status 500", clock, clock, jitter=0.0)
        assert change is not None and change.new == "UNHEALTHY"
        lengths.append(h.open_until - clock)
        clock = h.open_until
        assert half_open(h, clock, clock) is not None and h.circuit == "half_open"
    assert lengths == [10, 20, 35, 35]  # doubled, capped at max_ejection_time
    observe(h, s, "passive", "success", "", clock, clock)
    assert (h.health, h.circuit) == ("HEALTHY", "closed")
    clock += 36  # healthy for longer than max_ejection_time: the next ejection is the base again
    observe(h, s, "passive", "http_failures", "status 500", clock, clock, jitter=0.99)
    assert 10 <= h.open_until - clock <= 11 and h.ejections == 1


def test_manual_unhealthy_has_no_timer_and_failures_while_unhealthy_do_not_count():
    s = settings(http_failures=1)
    h = Health()
    set_manually(h, False, 7, 0, 0)
    assert (h.health, h.circuit, h.open_until, h.manual) == ("UNHEALTHY", "open", 0.0, 7)
    assert half_open(h, 10_000, 10_000) is None
    assert observe(h, s, "passive", "http_failures", "status 500", 1, 1) is None and h.http_failures == 0


def test_records_round_trip():
    h = Health(address="10.0.0.1:80", http_failures=2, transitions={"UNHEALTHY": 1})
    assert Health.decode(h.encode()) == h
    assert Health.decode(None) == Health()
