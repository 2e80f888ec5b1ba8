"""Alertmanager-compatible silences (autopilot.silences): validation, wall-clock state,
matching incidents, the gettableSilence shape and GET filters."""

from __future__ import annotations

from typing import Any

import pytest

from autopilot.notify import Notice
from autopilot.silences import (
    InvalidSilence,
    Silence,
    expire,
    filter_silences,
    format_time,
    incident_label_sets,
    parse_filter,
    parse_postable,
    parse_time,
    silencing,
)

NOW = 1_800_000_000.0


def body(*matchers: dict[str, Any], starts: float = NOW, ends: float = NOW + 3600,
         **extra: Any) -> dict[str, Any]:
    return {"matchers": list(matchers), "startsAt": format_time(starts),
            "endsAt": format_time(ends), "createdBy": "alice", "comment": "migration",
            **extra}


def eq(name: str, value: str, regex: bool = False, equal: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


def incident(service: str = "cart-api", *metrics: str, severity: str = "critical",
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    signals = [{"series": f"{service}|{m}|" + ",".join(f"{k}={v}" for k, v in
                                                       sorted((labels or {}).items())),
                "metric_name": m} for m in metrics]
    return {"id": "i1", "service": service, "severity": severity, "signals": signals}


def test_amtool_body_round_trips_to_the_gettable_shape() -> None:
    # what amtool 0.25 posts for `silence add service=cart-api -d 1h -c migration`
    posted = {"matchers": [{"name": "service", "value": "cart-api", "isRegex": False,
                            "isEqual": True}],
              "startsAt": "2027-01-15T08:00:00.123456789Z",
              "endsAt": "2027-01-15T09:00:00.123456789Z",
              "createdBy": "root", "comment": "migration"}
    now = parse_time("2027-01-15T08:00:00Z", "now")
    s = parse_postable(posted, now)
    got = s.gettable(now + 1)
    assert set(got) == {"id", "status", "updatedAt", "matchers", "startsAt", "endsAt",
                        "createdBy", "comment"}
    assert got["status"] == {"state": "active"}
    assert got["matchers"] == posted["matchers"]
    assert got["startsAt"] == "2027-01-15T08:00:00.123Z"
    assert got["endsAt"] == "2027-01-15T09:00:00.123Z"
    assert Silence.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(("matchers", "message"), [
    ((), "at least one matcher required"),
    ((eq("service", ".*", regex=True),), "must not match the empty string"),
    ((eq("service", ""),), "must not match the empty string"),
    ((eq("service", "(", regex=True),), "invalid regular expression"),
    ((eq("bad-name", "x"),), "invalid label name"),
])
def test_invalid_matchers_are_refused_with_alertmanagers_message(
        matchers: tuple[dict[str, Any], ...], message: str) -> None:
    with pytest.raises(InvalidSilence, match=message):
        parse_postable(body(*matchers), NOW)


def test_times_are_checked() -> None:
    with pytest.raises(InvalidSilence, match="start time must be before end time"):
        parse_postable(body(eq("service", "a"), starts=NOW + 10, ends=NOW + 5), NOW)
    with pytest.raises(InvalidSilence, match="end time can't be in the past"):
        parse_postable(body(eq("service", "a"), starts=NOW - 20, ends=NOW - 10), NOW)
    with pytest.raises(InvalidSilence, match="date-time"):
        parse_postable({**body(eq("service", "a")), "endsAt": "tomorrow"}, NOW)
    with pytest.raises(InvalidSilence, match="comment"):
        parse_postable({**body(eq("service", "a")), "comment": ""}, NOW)
    # a start in the past begins now
    assert parse_postable(body(eq("service", "a"), starts=NOW - 60), NOW).starts_at == NOW


def test_state_is_by_wall_clock_and_expire_ends_it() -> None:
    s = parse_postable(body(eq("service", "a"), starts=NOW + 60, ends=NOW + 120), NOW)
    assert [s.state(t) for t in (NOW, NOW + 60, NOW + 119.9, NOW + 120)] == [
        "pending", "active", "active", "expired"]
    assert expire(s, NOW).state(NOW) == "expired"  # pending → expired
    active = expire(s, NOW + 90)
    assert active.ends_at == NOW + 90 and active.updated_at == NOW + 90
    assert expire(active, NOW + 100) is active  # already expired: unchanged


def test_update_keeps_the_id() -> None:
    first = parse_postable(body(eq("service", "a")), NOW)
    again = parse_postable(body(eq("service", "b"), id=first.id), NOW + 5, existing=first)
    assert again.id == first.id and again.updated_at == NOW + 5


def test_regexes_are_anchored_and_negation_works() -> None:
    s = parse_postable(body(eq("service", "cart", regex=True)), NOW)
    assert not s.matches({"service": "cart-api"})
    s = parse_postable(body(eq("service", "cart.*", regex=True),
                            eq("severity", "info", equal=False)), NOW)
    assert s.matches({"service": "cart-api", "severity": "critical"})
    assert not s.matches({"service": "cart-api", "severity": "info"})


def test_an_incident_is_silenced_only_when_every_signal_is() -> None:
    by_service = parse_postable(body(eq("service", "cart-api")), NOW)
    by_metric = parse_postable(body(eq("metric_name", "latency_ms")), NOW)
    by_label = parse_postable(body(eq("region", "eu")), NOW)
    inc = incident("cart-api", "latency_ms", "error_rate", labels={"region": "eu"})
    assert incident_label_sets(inc)[0] == {"region": "eu", "service": "cart-api",
                                           "severity": "critical",
                                           "metric_name": "latency_ms"}
    assert silencing(inc, [by_service], NOW + 1) == [by_service.id]
    assert silencing(inc, [by_metric], NOW + 1) == []  # error_rate still pages
    assert silencing(inc, [by_label], NOW + 1) == [by_label.id]
    assert silencing(incident("other", "latency_ms"), [by_service], NOW + 1) == []
    # not active (expired, or pending): pages
    assert silencing(inc, [by_service], NOW + 3600) == []
    pending = parse_postable(body(eq("service", "cart-api"), starts=NOW + 60), NOW)
    assert silencing(inc, [pending], NOW) == []
    # an incident without signals offers service and severity
    assert silencing(incident("cart-api"), [by_service], NOW) == [by_service.id]
    # alertname, when an Alertmanager alert brought the signal
    inc2 = incident("cart-api", "up")
    inc2["signals"][0]["alertname"] = "TargetDown"
    named = parse_postable(body(eq("alertname", "TargetDown")), NOW)
    assert silencing(inc2, [named], NOW) == [named.id]


def test_filters_match_equality_matchers_like_alertmanager() -> None:
    a = parse_postable(body(eq("service", "cart-api"), eq("severity", "critical")), NOW)
    b = parse_postable(body(eq("service", "web.*", regex=True)), NOW)
    assert filter_silences([a, b], [parse_filter('service="cart-api"')]) == [a]
    assert filter_silences([a, b], [parse_filter("service=~cart.*"),
                                    parse_filter('severity!="info"')]) == [a]
    assert filter_silences([a, b], []) == [a, b]
    with pytest.raises(InvalidSilence, match="bad matcher format"):
        parse_filter("not a matcher")


def test_notice_keeps_silence_ids_through_the_table() -> None:
    n = Notice({"id": "i1"}, silenced_by=("s1",), silenced_ever=("s1",))
    assert Notice.from_dict(n.to_dict()) == n
    assert "silenced_by" not in Notice({"id": "i1"}).to_dict()
