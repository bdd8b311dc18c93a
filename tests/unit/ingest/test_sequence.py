"""Lost-frame accounting from sequence numbers (protocol, step 4)."""

from __future__ import annotations

import pytest

from faaslens.ingest.sequence import SequenceTracker, frame_origin


def test_gaps_count_lost_frames_and_late_ones_take_back() -> None:
    t = SequenceTracker()
    assert t.see("a", 1, 0.0) == 0
    assert t.see("a", 2, 0.0) == 0
    assert t.see("a", 5, 0.0) == 2  # 3 and 4 missing
    assert (t.lost, t.late) == (2, 0)
    assert t.see("a", 3, 0.0) == -1  # late: one taken back
    assert (t.lost, t.late) == (2, 1)
    assert t.lost - t.late == 1
    assert t.see("a", 5, 0.0) == 0  # duplicate of the highest


def test_first_frame_of_a_sender_says_nothing_and_senders_are_separate() -> None:
    t = SequenceTracker()
    assert t.see("a", 100, 0.0) == 0  # joined late or we restarted: not a loss
    assert t.see("b", 1, 0.0) == 0
    assert t.see("b", 3, 0.0) == 1
    assert t.see("a", 101, 0.0) == 0
    assert t.lost == 1


def test_idle_senders_forgotten_and_table_capped() -> None:
    t = SequenceTracker(ttl_s=10, max_senders=10)
    t.see("old", 1, 0.0)
    t.see("new", 1, 5.0)
    assert t.sweep(12.0) == 1 and len(t) == 1
    assert t.see("old", 9, 12.0) == 0  # a new start, not 7 lost
    for i in range(50):
        t.see(f"s{i}", 1, 20.0 + i)
    assert len(t) <= 10


@pytest.mark.parametrize(
    ("frame", "origin"),
    [
        (b'{"v":1,"src":"a1-b.c_d","seq":42,"ev":[]}', ("a1-b.c_d", 42)),
        (b"s1 k1 " + b"0" * 64 + b' {"v":1,"src":"x","seq":7}', ("x", 7)),
        (b'{"v": 1, "seq" : 9 , "src" : "y", "ev": []}', ("y", 9)),
        (b'{"v":1,"src":"has space","seq":1}', None),
        (b'{"v":1,"src":"x","seq":1.5}', None),
        (b"not json at all", None),
        (b'{"v":1,' + b" " * 600 + b'"src":"late","seq":1}', None),  # not in the head
    ],
)
def test_frame_origin_reads_only_the_envelope_head(
    frame: bytes, origin: tuple[str, int] | None
) -> None:
    assert frame_origin(frame) == origin


def test_a_frame_older_than_the_first_seen_gives_nothing_back() -> None:
    t = SequenceTracker()
    assert t.see("a", 5, 0.0) == 0  # the worker started mid-stream
    assert t.see("a", 3, 0.0) == 0  # never counted lost, so not "late"
    assert t.see("a", 8, 0.0) == 2  # 6 and 7
    assert t.see("a", 4, 0.0) == 0  # still older than the first seen
    assert t.see("a", 7, 0.0) == -1  # inside a counted gap: late
    assert (t.lost, t.late) == (2, 1)
