"""History chunks: the rows the loop hands the store packed, cut into stored columns, and back."""
from __future__ import annotations

import json
import math
import random
import struct
from array import array
from datetime import timezone

import pytest

from nbsched.history import (ROW_BYTES, ErrorInfo, PackedRows, OUTCOME_CATEGORIES, REASONS, RunLog, pack_row,
                             pack_row_aside, unpack_row)
from nbsched.store._codec import decode_chunk, decode_packed, encode_chunk, encode_packed
from nbsched.store._schema import OUTCOME_CODES, REASON_CODES


def _reference(job_ids, rows):
    """The stored layout written out row by row (little-endian columns), to compare with."""
    def col(code, values):
        return b"".join(struct.pack("<" + code, v) for v in values)

    def t(v):
        return math.nan if v is None else v

    times = [r[1] for r in rows]
    errors = {i: list(r[7]) for i, r in enumerate(rows) if r[7] is not None}
    workers = {i: r[9] for i, r in enumerate(rows) if r[9] is not None}
    reasons = bytes(REASON_CODES[r[8]] for r in rows)
    return (len(rows), min(times), max(times), col("i", job_ids), col("q", [r[0] for r in rows]), col("d", times),
            col("d", [t(r[2]) for r in rows]), col("d", [t(r[3]) for r in rows]), col("d", [r[4] for r in rows]),
            bytes(OUTCOME_CODES[r[5]] for r in rows), col("i", [r[6] for r in rows]),
            json.dumps(errors, separators=(",", ":")) if errors else None,
            None if set(reasons) == {REASON_CODES["schedule"]} else reasons,
            json.dumps(workers, separators=(",", ":")) if workers else None)


def _rows(n, seed, plain=False):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        outcome = "success" if plain else rnd.choice(OUTCOME_CATEGORIES)
        ok = outcome == "success"
        scheduled = 1.8e9 + rnd.random() * 1e6
        started = None if outcome in ("missed", "skipped") else scheduled + rnd.random()
        finished = None if started is None or outcome == "cancelled" else started + rnd.random()
        err = None if ok or outcome in ("missed", "skipped") else ErrorInfo("ValueError", f"bad {i}", "tb\nline")
        # as the engine records it: started - planned, mostly planned = scheduled; else zero (an
        # upstream run), or another planned time (a retry, a jittered fire time)
        if started is None:
            lateness = rnd.random() * 5
        elif plain:
            lateness = started - scheduled
        else:
            lateness = rnd.choice([started - scheduled, started - scheduled, 0.0, rnd.random() * 5])
        out.append((rnd.randrange(1, 2 ** 40), scheduled, started, finished, lateness, outcome,
                    rnd.randrange(0, 6), err, "schedule" if plain else rnd.choice(REASONS),
                    None if plain or rnd.random() < 0.7 else f"tcp://10.0.0.{i % 250}:4000"))
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, str) and isinstance(y, str) and x.startswith("{"):
            assert json.loads(x) == json.loads(y)
        else:
            assert x == y


@pytest.mark.parametrize("plain", [True, False])
def test_packed_rows_encode_to_the_stored_columns_and_decode_back(plain):
    rows = _rows(500, seed=7 if plain else 8, plain=plain)
    job_ids = [i % 37 + 1 for i in range(len(rows))]
    expected = _reference(job_ids, rows)
    _same(encode_chunk(job_ids, rows), expected)
    # as the loop hands them over: the bytes RunLog.record returns, plus the values kept aside
    log = RunLog("j", max_rows=None)
    handed = [log.record(*r) for r in rows]  # the packed row, or (packed row, values kept aside)
    assert all(type(h) is bytes for h in handed) == plain
    values = encode_packed(job_ids, handed)
    _same(values, expected)
    ids, back = decode_chunk(*values[3:])
    assert list(ids) == job_ids
    assert back == rows
    assert [unpack_row(*((h, None) if type(h) is bytes else h)) for h in handed] == rows
    # and back packed, as a restore takes them: the very bytes the log packed
    ids, packed = decode_packed(*values[3:])
    assert list(array("i", ids)) == job_ids
    assert packed.data == bytes(log._buf)
    assert packed.rows() == rows
    assert len(packed) == len(rows) and (packed.aside is None) == plain
    assert packed.column("outcome") == [r[5] for r in rows]
    assert packed.column("scheduled") == [r[1] for r in rows]
    fresh = RunLog("k", max_rows=None)
    fresh.prepend(packed)
    assert fresh.rows == rows
    assert PackedRows.of(rows).data == packed.data and PackedRows.of(rows).aside == packed.aside


def test_lateness_is_packed_only_as_how_the_row_has_it_and_comes_back_exact():
    s = 1.7e9 + 0.123
    rows = [
        (1, s, s + 0.0004, s + 0.0009, (s + 0.0004) - s, "success", 1, None, "schedule", None),  # derived
        (2, s, s + 0.0004, s + 0.0009, 0.0004, "success", 1, None, "schedule", None),  # not exactly that: aside
        (3, s, s + 2.0, s + 2.5, 0.0, "success", 1, None, "upstream", None),  # started when decided
        (4, s, None, None, 3.25, "missed", 0, None, "schedule", None),  # in the started time's place
        (5, s, None, None, 0.0, "skipped", 0, None, "catchup", None),
        (6, s, s + 7.0, s + 7.5, 1.5, "error", 2, ErrorInfo("E", "m", "tb"), "schedule", "tcp://w:1"),  # a retry
        (7, s, s + 1.0, s + 1.5, -0.25, "success", 1, None, "manual", None),
    ]
    assert (s + 0.0004) - s != 0.0004
    kept = [pack_row_aside(*r)[1] for r in rows]
    assert kept == [None, (0.0004, None, None), None, None, None, (1.5, rows[5][7], "tcp://w:1"),
                    (-0.25, None, None)]
    log = RunLog("j", max_rows=None)
    handed = [log.record(*r) for r in rows]
    assert handed == [pack_row_aside(*r)[0] if k is None else pack_row_aside(*r) for r, k in zip(rows, kept)]
    assert log.rows == rows and [log.last_row()] == rows[-1:]
    assert [unpack_row(*pack_row_aside(*r)) for r in rows] == rows
    frame = log.frame(timezone.utc)
    assert frame["lateness"].dt.total_seconds().tolist() == pytest.approx([r[4] for r in rows], abs=1e-9)
    assert (frame["lateness"].array.asi8 == [round(r[4] * 1e9) for r in rows]).all()
    assert frame["started_at"].isna().tolist() == [r[2] is None for r in rows]
    assert frame["reason"].tolist() == [r[8] for r in rows]
    values = encode_packed(list(range(1, 8)), handed)
    assert _unpack_d(values[8]) == [r[4] for r in rows]  # the stored lateness column, every value exact
    assert _unpack_d(values[6])[3:5] != _unpack_d(values[6])[3:5]  # NaN started where none
    _, back = decode_packed(*values[3:])
    assert back.data == bytes(log._buf) and back.rows() == rows


def _unpack_d(blob):
    return list(struct.unpack(f"<{len(blob) // 8}d", blob))


def test_a_row_of_the_wrong_size_is_refused_with_the_sizes():
    good = pack_row(1, 2.0, 2.5, 3.0, 0.5, "success", 1, None, "schedule")
    with pytest.raises(ValueError, match=rf"{ROW_BYTES} packed bytes each; got {2 * ROW_BYTES - 1} bytes for 2 rows"):
        encode_packed([1, 2], [good, good[:-1]])


def test_a_log_prepends_packed_rows_before_its_own_within_retention():
    rows = _rows(30, seed=3)
    log = RunLog("j", max_rows=25)
    newer = _rows(10, seed=4)
    for r in newer:
        log.record(*r)
    log.prepend(PackedRows.of(rows))
    assert log.rows == (rows + newer)[-25:]
