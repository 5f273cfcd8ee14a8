"""The compact project listing: a Mapping that behaves like the dict it replaces, in a fraction of the memory."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from sync import listing as listing_module
from sync.listing import RUN_ENTRIES, ProjectListing, SortedTable, SpilledTable


def reference(pairs: list[tuple[str, int | None]]) -> dict[str, int | None]:
    """What the listing must equal: a dict where a name listed twice keeps its highest serial (None is lowest)."""
    expected: dict[str, int | None] = {}
    for name, serial in pairs:
        if name not in expected or (serial is not None and (expected[name] is None or serial > expected[name])):
            expected[name] = serial
    return expected


def test_matches_a_dict_over_several_sorted_runs_with_duplicates():
    rng = random.Random(7)
    pairs = [
        (f"p{rng.randrange(RUN_ENTRIES * 2)}", rng.choice((None, rng.randrange(10**9))))
        for _ in range(RUN_ENTRIES * 3 + 17)  # four runs to merge, with names repeated across runs
    ]
    listing = ProjectListing(pairs)
    expected = reference(pairs)
    assert len(listing) == len(expected) < len(pairs)
    assert list(listing) == sorted(expected)
    assert dict(listing.items()) == expected
    assert listing == expected
    for name in rng.sample(sorted(expected), 500):
        assert name in listing
        assert listing[name] == expected[name]
        assert listing.get(name, "absent") == expected[name]


def test_a_spilled_table_reads_as_the_table_it_holds(monkeypatch):
    monkeypatch.setattr(listing_module, "SPILL_WRITE", 100)  # many writes
    monkeypatch.setattr(listing_module, "SPILL_READ", 37)  # and reads that end inside a line
    rng = random.Random(11)
    keys = sorted({f"p{rng.randrange(10**6)}".encode() for _ in range(2000)})
    entries = [(key, rng.choice((b"", b"%d" % rng.randrange(10**9), b'7,"\\"e1\\""'))) for key in keys]
    spilled, in_memory = SpilledTable(entries), SortedTable.from_sorted(entries)
    assert len(spilled) == len(in_memory) == len(entries)
    assert list(spilled) == list(in_memory) == entries
    for key, value in rng.sample(entries, 300):
        assert spilled.get(key) == value
    for absent in (b"a", b"p", b"p0" + keys[0], keys[-1] + b"0", keys[5] + b"-"):
        assert spilled.get(absent) is None
    assert SpilledTable([]).get(b"p1") is None
    assert list(SpilledTable([])) == []


@pytest.mark.parametrize("entries", [[(b"b", b""), (b"a", b"")], [(b"a", b"1"), (b"a", b"2")]])
def test_a_spilled_table_refuses_keys_out_of_order(entries):
    with pytest.raises(ValueError, match="'a' is out of order or given twice"):
        SpilledTable(entries)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], {}),
        ([("a", 1), ("a", None), ("a", 3), ("a", 2)], {"a": 3}),
        ([("a", None), ("a", None)], {"a": None}),
        ([("a-b", 5), ("a", 7), ("ab", 1), ("a-b", 9)], {"a": 7, "a-b": 9, "ab": 1}),  # prefixes sort first
        ([("x", 10), ("x", 9)], {"x": 10}),  # 10 > 9 although "10" < "9" as text
    ],
)
def test_duplicates_keep_the_highest_serial(pairs, expected):
    listing = ProjectListing(pairs)
    assert dict(listing.items()) == expected
    assert list(listing) == sorted(expected)


def test_lookups_of_absent_or_foreign_keys():
    listing = ProjectListing([("b", 1), ("d", 2)])
    for absent in ("a", "c", "e", "", "é", "b\t1"):
        assert absent not in listing
        with pytest.raises(KeyError):
            listing[absent]
    assert 1 not in listing
    assert listing.get("c") is None


@pytest.mark.parametrize("name", ["", "tab\tname", "new\nline", "ünïcode", "sp ace", "nul\x00"])
def test_refuses_a_name_that_is_not_normalized_text(name):
    with pytest.raises(ValueError, match="not a normalized"):
        ProjectListing([(name, 1)])


def test_pypi_sized_listing_stays_small():
    """930,000 projects: built in a child process, whose peak RSS growth must stay well below a dict's."""
    code = (
        "from sync.listing import ProjectListing\n"
        "def peak():  # this process's own high-water mark (getrusage's starts from the parent's)\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])\n"
        "before = peak()\n"
        "listing = ProjectListing((f'project-{i * 7919 % 930000}-name', 30_000_000 + i) for i in range(930000))\n"
        "assert len(listing) == 930000 and listing['project-5-name'] is not None\n"
        "print((peak() - before) // 1024)\n"
    )
    grown_mb = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert grown_mb < 90, f"building the listing grew RSS by {grown_mb} MB"
