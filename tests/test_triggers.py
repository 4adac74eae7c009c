"""Triggers are pure: tables of (after, expected).  DST cases in two zones, both transitions."""
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from nbsched import Cron, Date, Interval, TriggerError, parse_trigger

from conftest import START

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


def fires(spec, after, n, tz="UTC"):
    return [d.isoformat() for d in parse_trigger(spec, tz=tz).preview(n, after)]


# ---------------------------------------------------------------------------------------- interval
@pytest.mark.parametrize("spec,seconds", [
    ("every 30s", 30), ("every 5m", 300), ("every 1h30m", 5400), ("every 2d", 172800), ("every 1w", 604800),
    ("every 250ms", 0.25), ("every 0.5s", 0.5), ("every 2 minutes", 120), ("every 1 hour", 3600),
    ("every 10 seconds", 10), ("every 3 days", 259200), ("every 1h 30m", 5400), ("every 90", 90),
])
def test_interval_units(spec, seconds):
    trig = parse_trigger(spec)
    assert isinstance(trig, Interval)
    assert trig.seconds == pytest.approx(seconds)


def test_interval_is_anchored_and_pure():
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    trig = Interval(10, start=start)
    assert trig.next_fire(start - timedelta(seconds=1)) == start
    assert trig.next_fire(start) == start + timedelta(seconds=10)
    # a run that finished 3 s late does not shift the rhythm
    assert trig.next_fire(start + timedelta(seconds=13)) == start + timedelta(seconds=20)
    assert trig.next_fire(start + timedelta(seconds=13)) == trig.next_fire(start + timedelta(seconds=13))


def test_interval_end_finishes():
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    trig = parse_trigger("every 10s", start=start, end=start + timedelta(seconds=25))
    assert [d.second for d in trig.preview(10, start - timedelta(seconds=1))] == [0, 10, 20]
    assert trig.next_fire(start + timedelta(seconds=20)) is None


def test_interval_unanchored_anchors_one_interval_after_now():
    trig = parse_trigger("every 5m").anchored(1_000_000.0)
    assert trig.next_timestamp(1_000_000.0) == 1_000_300.0


def test_interval_keeps_rhythm_through_dst():
    start = datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN)
    trig = Interval(3600, start=start, tz=BERLIN)
    got = trig.preview(4, start)
    assert [b.timestamp() - a.timestamp() for a, b in zip(got, got[1:])] == [3600, 3600, 3600]


# -------------------------------------------------------------------------------------------- cron
def test_cron_every_five_minutes():
    after = datetime(2026, 1, 5, 9, 2, tzinfo=UTC)
    assert fires("cron */5 * * * *", after, 3) == [
        "2026-01-05T09:05:00+00:00", "2026-01-05T09:10:00+00:00", "2026-01-05T09:15:00+00:00"]


def test_cron_strictly_after():
    at = datetime(2026, 1, 5, 9, 5, tzinfo=UTC)
    assert parse_trigger("cron */5 * * * *", tz="UTC").next_fire(at) == at + timedelta(minutes=5)


def test_cron_names_and_weekdays():
    # 2026-01-09 is a Friday
    after = datetime(2026, 1, 9, 10, 0, tzinfo=UTC)
    assert fires("cron 0 9 * * mon-fri", after, 2) == ["2026-01-12T09:00:00+00:00", "2026-01-13T09:00:00+00:00"]
    assert fires("cron 0 0 1 jan *", after, 1) == ["2027-01-01T00:00:00+00:00"]


def test_cron_six_fields_leading_seconds():
    after = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
    assert fires("cron 30 * * * * *", after, 2) == ["2026-01-05T09:00:30+00:00", "2026-01-05T09:01:30+00:00"]


@pytest.mark.parametrize("alias,expected", [
    ("@hourly", "2026-01-05T10:00:00+00:00"), ("@daily", "2026-01-06T00:00:00+00:00"),
    ("@weekly", "2026-01-11T00:00:00+00:00"), ("@monthly", "2026-02-01T00:00:00+00:00"),
    ("cron @daily", "2026-01-06T00:00:00+00:00"),
])
def test_cron_aliases(alias, expected):
    assert fires(alias, datetime(2026, 1, 5, 9, 30, tzinfo=UTC), 1) == [expected]


def test_cron_day_of_month_or_day_of_week():
    # both restricted: a day matches if EITHER matches (Vixie cron / croniter rule, documented)
    after = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # Thursday
    got = fires("cron 0 9 15 * mon", after, 3)
    assert got == ["2026-01-05T09:00:00+00:00", "2026-01-12T09:00:00+00:00", "2026-01-15T09:00:00+00:00"]


def test_cron_in_zone_returns_zone_times():
    got = parse_trigger("cron 0 9 * * *", tz="Europe/Berlin").next_fire(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))
    assert got.tzinfo == BERLIN and got.hour == 9 and got.utcoffset() == timedelta(hours=1)


def test_cron_impossible_date_finishes():
    assert parse_trigger("cron 0 0 30 2 *").next_fire(datetime(2026, 1, 1, tzinfo=UTC)) is None


# --------------------------------------------------------------------------------------------- DST
# Europe/Berlin: 2026-03-29 02:00 -> 03:00 (spring), 2026-10-25 03:00 -> 02:00 (fall back)
# America/New_York: 2026-03-08 02:00 -> 03:00 (spring), 2026-11-01 02:00 -> 01:00 (fall back)
DST_CASES = [
    # fixed hour inside the spring gap: runs once at the gap's end, never skipped
    ("cron 30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=BERLIN),
     ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("cron 30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=NY),
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    ("cron 0,15,30,45 2 * * *", "Europe/Berlin", datetime(2026, 3, 29, 1, 50, tzinfo=BERLIN),
     ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]),
    ("daily at 02:30", "America/New_York", datetime(2026, 3, 8, 0, 0, tzinfo=NY),
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    # fixed hour in the repeated hour: once, at the first occurrence
    ("cron 30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=BERLIN),
     ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    ("cron 30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=NY),
     ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    # wildcard / stepped hour: real-time rhythm through the repeated hour, gap times do not exist
    ("cron */30 * * * *", "Europe/Berlin", datetime(2026, 10, 25, 1, 45, tzinfo=BERLIN),
     ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
      "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]),
    ("@hourly", "America/New_York", datetime(2026, 11, 1, 0, 10, tzinfo=NY),
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    ("cron */30 * * * *", "Europe/Berlin", datetime(2026, 3, 29, 1, 10, tzinfo=BERLIN),
     ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"]),
    ("@hourly", "America/New_York", datetime(2026, 3, 8, 0, 30, tzinfo=NY),
     ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]),
    # 'at' a wall time that does not exist / happens twice
    ("at 2026-03-29 02:30", "Europe/Berlin", datetime(2026, 3, 1, tzinfo=UTC), ["2026-03-29T03:00:00+02:00"]),
    ("at 2026-11-01 01:30", "America/New_York", datetime(2026, 10, 1, tzinfo=UTC), ["2026-11-01T01:30:00-04:00"]),
]


@pytest.mark.parametrize("spec,zone,after,expected", DST_CASES)
def test_dst_policy(spec, zone, after, expected):
    assert fires(spec, after, len(expected), tz=zone) == expected


def test_dst_fall_back_fixed_hour_from_inside_repeated_hour():
    # after the first 02:30 (CEST) has passed, the second 02:30 (CET) is NOT a fire time
    first = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)
    nxt = parse_trigger("cron 30 2 * * *", tz="Europe/Berlin").next_fire(first)
    assert nxt.isoformat() == "2026-10-26T02:30:00+01:00"


def test_dst_no_duplicate_fires_over_a_year():
    trig = parse_trigger("cron 30 2 * * *", tz="Europe/Berlin")
    got = trig.preview(366, datetime(2026, 1, 1, tzinfo=UTC))
    days = [d.date() for d in got]
    assert len(days) == len(set(days)) == 366


# ---------------------------------------------------------------------------------------- one-shot
def test_at_and_in():
    trig = parse_trigger("at 2026-12-01 09:00", tz="Europe/Berlin")
    assert isinstance(trig, Date)
    assert trig.next_fire(datetime(2026, 1, 1, tzinfo=UTC)).isoformat() == "2026-12-01T09:00:00+01:00"
    assert trig.next_fire(datetime(2026, 12, 1, 9, 0, tzinfo=BERLIN)) is None
    assert parse_trigger("at 2026-12-01T09:00+00:00").next_fire(datetime(2026, 1, 1, tzinfo=UTC)).hour == 9
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert parse_trigger("in 10m", now=now).next_fire(now) == now + timedelta(minutes=10)
    assert parse_trigger("at 08:00", tz="UTC", now=now).next_fire(now) == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------- shorthand
def test_shorthand():
    after = datetime(2026, 1, 9, 19, 0, tzinfo=UTC)  # Friday evening
    assert fires("daily at 09:30", after, 1) == ["2026-01-10T09:30:00+00:00"]
    assert fires("weekdays at 18:00", after, 1) == ["2026-01-12T18:00:00+00:00"]
    assert fires("weekends at 10:00", after, 2) == ["2026-01-10T10:00:00+00:00", "2026-01-11T10:00:00+00:00"]
    assert fires("mondays at 08:15", after, 1) == ["2026-01-12T08:15:00+00:00"]
    assert parse_trigger("weekdays at 18:00").describe().startswith("weekdays at 18:00")


def test_describe_in_words():
    assert parse_trigger("every 1h30m").describe() == "every 1h30m"
    assert parse_trigger("cron */5 * * * *", tz="UTC").describe() == "every 5 minutes (UTC)"
    assert parse_trigger("cron 0 9 * * mon-fri", tz="UTC").describe() == "at 09:00 on weekdays (UTC)"


def test_spec_round_trip_as_json():
    import json

    from nbsched.triggers import trigger_from_dict

    for spec in ["every 5m", "cron 0 9 * * mon-fri", "daily at 09:30", "at 2026-12-01 09:00"]:
        trig = parse_trigger(spec, tz="Europe/Berlin").anchored(1_767_600_000.0)
        again = trigger_from_dict(json.loads(json.dumps(trig.to_dict())))
        after = datetime(2026, 3, 1, tzinfo=UTC)
        assert again.preview(5, after) == trig.preview(5, after)


# ---------------------------------------------------------------------------------------- bad specs
BAD = [
    ("every 5 parsecs", "unknown unit 'parsecs'"),
    ("every 0s", "more than zero"),
    ("every -1m", "more than zero"),
    ("every", "missing the length"),
    ("cron 61 * * * *", "minute field '61'"),
    ("cron * 25 * * *", "hour field '25'"),
    ("cron * * *", "expected 5 fields"),
    ("cron * * * * * * *", "expected 5 fields"),
    ("cron 0 9 * * funday", "day of week field 'funday'"),
    ("at 2025-13-01", "month must be in 1..12"),
    ("at tomorrow", "invalid date"),
    ("in 5 parsecs", "unknown unit"),
    ("daily at 25:00", "hours 0-23"),
    ("sometimes", "unknown trigger spec"),
    ("", "empty trigger spec"),
]


@pytest.mark.parametrize("spec,fragment", BAD)
def test_bad_specs_name_the_problem_and_valid_forms(spec, fragment):
    with pytest.raises(TriggerError) as info:
        parse_trigger(spec)
    message = str(info.value)
    assert fragment in message
    assert isinstance(info.value, ValueError)
    assert "e.g." in message or "valid forms" in message or "use" in message


def test_unknown_zone():
    with pytest.raises(TriggerError, match="unknown time zone 'Mars/Olympus'.*IANA"):
        parse_trigger("every 5m", tz="Mars/Olympus")


def test_triggers_are_frozen_values():
    trig = Cron("*/5 * * * *", tz=UTC)
    with pytest.raises(AttributeError, match="expr"):
        trig.expr = "x"
    assert trig == Cron("*/5 * * * *", tz=UTC)


def test_interval_float_rounding_never_yields_a_fire_at_after():
    start = datetime(2026, 11, 29, 20, 0, 0, 123456, tzinfo=UTC)
    trig = Interval(0.1, start=start)
    got = [d.timestamp() for d in trig.preview(2000, start)]
    steps = [b - a for a, b in zip(got, got[1:])]
    assert min(steps) > 0.0999 and max(steps) < 0.1001


# ------------------------------------------------------------------------ out-of-range lengths
TOO_LONG = "too long; the largest allowed is 100 years (36525d, 3155760000s)"


@pytest.mark.parametrize("spec,shown", [
    ("every 100000000000000000000s", "'every 100000000000000000000s'"),
    ("every 3000000000000s", "'every 3000000000000s'"),
    ("in 99999999999999d", "'in 99999999999999d'"),
    ("every 1e308s", "'every 1e308s'"),
    ("every 1e400s", "'every 1e400s'"),
    ("every 5300w", "'every 5300w'"),
])
def test_huge_lengths_name_the_value_and_the_largest_allowed(spec, shown):
    with pytest.raises(TriggerError) as info:
        parse_trigger(spec)
    assert str(info.value).startswith(f"invalid {'delay' if spec.startswith('in') else 'interval'} {shown}: ")
    assert str(info.value).endswith(TOO_LONG)


def test_exponent_notation_is_read_as_a_number():
    assert parse_trigger("every 1e3s").seconds == 1000.0
    assert parse_trigger("every 2.5e-1s").seconds == 0.25
    assert parse_trigger("every 1.5e2ms").seconds == pytest.approx(0.15)


def test_the_largest_allowed_length_is_accepted_and_fires():
    trig = parse_trigger("every 36525d", tz="UTC").anchored(START.timestamp())
    assert trig.next_fire(START) == START + timedelta(days=36525)


def test_huge_numbers_as_durations_are_refused_without_a_huge_message():
    from nbsched import DurationError, parse_duration

    with pytest.raises(DurationError) as info:
        parse_duration(10 ** 5000, what="timeout")
    assert str(info.value) == f"invalid timeout <a number of about 5000 digits>: {TOO_LONG}"
    with pytest.raises(DurationError, match=r"invalid interval 1e\+20: too long"):
        Interval(1e20)


@pytest.mark.parametrize("spec", ["every 0.000000001s", "every 0.5ms", "every 999e-6s"])
def test_intervals_below_the_resolution_name_the_smallest_allowed(spec):
    with pytest.raises(TriggerError) as info:
        parse_trigger(spec)
    assert str(info.value) == (f"invalid interval {spec!r}: shorter than the scheduler's resolution; the smallest "
                               "allowed interval is 1ms (e.g. 'every 1ms', 'every 0.5s')")


def test_the_smallest_interval_is_accepted():
    from nbsched.triggers import MIN_INTERVAL

    assert MIN_INTERVAL == 0.001
    assert parse_trigger("every 1ms").seconds == 0.001
    with pytest.raises(TriggerError, match="smallest allowed interval is 1ms"):
        Interval(0.0001)


def test_old_spec_names_warn_and_still_work():
    from nbsched.triggers import trigger_from_dict, trigger_from_spec

    trig = Cron("*/5 * * * *", tz=UTC)
    with pytest.warns(DeprecationWarning, match=r"to_spec\(\) is now Trigger.to_dict\(\)"):
        data = trig.to_spec()
    assert data == trig.to_dict()
    with pytest.warns(DeprecationWarning, match=r"trigger_from_spec\(\) is now trigger_from_dict\(\)"):
        assert trigger_from_spec(data) == trigger_from_dict(data) == trig


# ------------------------------------------------------------------ shared cron instants (issue 14)
@pytest.mark.parametrize("expr, zone", [
    ("* * * * * *", "UTC"),
    ("*/7 * * * *", "Europe/Paris"),
    ("30 2 * * *", "Europe/Paris"),        # in the spring-forward gap once a year
    ("30 1 * * *", "America/New_York"),    # repeated at the autumn fold
    ("0 9 * * mon-fri", "Asia/Kolkata"),
    ("0 0 29 2 *", "UTC"),                 # once every four years
])
def test_shared_cron_instants_match_a_fresh_search_walking_and_jumping(expr, zone):
    from nbsched.triggers import _CronTimes

    trig = parse_trigger(f"cron {expr}", tz=zone)
    fresh = _CronTimes(trig._times.expr, trig.tz, trig._times.seconds, trig._times.fixed_hour)
    rng = random.Random(expr)
    ts = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()
    for step in range(300):
        if step % 37 == 5:  # jump somewhere else (a preview or a backfill), backwards or forwards
            ts += rng.uniform(-40, 40) * 86400
        if step % 11 == 3:
            probe = ts + rng.uniform(0, 3600)  # between known instants
            assert trig.next_timestamp(probe) == fresh._search(probe), (step, probe)
        nxt = trig.next_timestamp(ts)
        assert nxt == fresh._search(ts), (step, ts)
        ts = nxt


def test_equal_cron_triggers_share_their_instants_and_search_a_few_ahead(monkeypatch):
    from nbsched import triggers

    a, b = parse_trigger("cron 15 * * * * *", tz="UTC"), triggers.Cron("15 * * * * *")
    assert a == b and a._times is b._times
    assert parse_trigger("cron 16 * * * * *", tz="UTC")._times is not a._times
    searches = []
    real = triggers._CronTimes._search
    monkeypatch.setattr(triggers._CronTimes, "_search", lambda self, after: searches.append(after) or real(self, after))
    t = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    first = a.next_timestamp(t)  # a new place in time: one search
    assert first == t + 15 and len(searches) == 1
    nxt = {name: first for name in "ab"}
    for _ in range(2 * triggers._CRON_AHEAD):  # both jobs walk forward minute by minute
        for name, trig in (("a", a), ("b", b)):
            nxt[name] = trig.next_timestamp(nxt[name])
    assert nxt == {"a": first + 2 * triggers._CRON_AHEAD * 60, "b": first + 2 * triggers._CRON_AHEAD * 60}
    assert len(searches) == 1 + 2 * triggers._CRON_AHEAD  # each instant searched once, for both jobs
