"""The mirror state: a compact name → (serial, ETag) table that behaves like a dict, and its JSON Lines form."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from sync import state as state_module
from sync.folder_storage import FolderStorage
from sync.layout import STATE_KEY
from sync.state import MirrorState, ProjectState, ProjectStates, load_state, save_state
from sync.storage import StorageError


def random_state(rng: random.Random) -> ProjectState:
    return ProjectState(rng.choice((None, rng.randrange(10**9))), rng.choice((None, f'"e{rng.randrange(10**6)}"')))


def test_behaves_like_a_dict_through_many_changes_and_folds(monkeypatch):
    monkeypatch.setattr(state_module, "FOLD_AFTER_CHANGES", 50)  # fold often
    monkeypatch.setattr(state_module, "MAX_TABLES", 8)  # and merge the tables into one now and then
    rng = random.Random(3)
    initial = {f"p{rng.randrange(3000)}": random_state(rng) for _ in range(1000)}
    table, reference = ProjectStates(initial.items()), dict(initial)
    for step in range(4000):
        name = f"p{rng.randrange(3000)}"
        action = rng.random()
        if action < 0.45:
            table[name] = reference[name] = random_state(rng)
        elif action < 0.7:
            assert table.pop(name, None) == reference.pop(name, None)
        elif action < 0.8:
            default = ProjectState(None, None)
            assert table.setdefault(name, default) == reference.setdefault(name, default)
        else:
            assert (name in table) == (name in reference)
            assert table.get(name) == reference.get(name)
        assert len(table) == len(reference), step
    assert list(table) == sorted(reference)
    assert dict(table.states()) == reference
    assert table == reference


def test_a_first_whole_index_run_keeps_its_rows_on_disk_not_in_memory():
    """A first run records every project once, in name order: each fold spills to a file, so what stays in memory
    is 4 bytes of offset a row (the rows themselves, ~70 bytes each, would be 11 MB here)."""
    rows = state_module.FOLD_AFTER_CHANGES * 10
    states = ProjectStates()
    tracemalloc.start()
    try:
        for index in range(rows):
            states[f"bulk-project-{index:07}"] = ProjectState(index + 1, f'"{index:032x}"')
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < rows * 8, f"{held:,} bytes held for {rows:,} rows"
    assert len(states) == rows
    assert states["bulk-project-0000007"] == ProjectState(8, f'"{7:032x}"')
    assert sum(1 for _ in states.rows()) == rows


def test_a_missing_name_is_a_key_error_and_bad_names_are_refused():
    table = ProjectStates([("a", ProjectState(1, None))])
    with pytest.raises(KeyError):
        table["b"]
    with pytest.raises(KeyError):
        del table["b"]
    assert "ü" not in table
    assert 5 not in table
    with pytest.raises(ValueError, match="not a normalized"):
        table["bad name"] = ProjectState(1, None)


def test_round_trip_keeps_every_field_and_any_etag():
    etags = [None, '"plain"', 'W/"weak"', "tab\there", "new\nline", "ünïcode", '"quote\\"d"', ""]
    state = MirrorState(
        serial=42,
        incomplete=True,
        pending={"x": 7, "y": None},
        projects={f"p{i}": ProjectState(i if i % 2 else None, etag) for i, etag in enumerate(etags)},
    )
    data = state.to_json()
    lines = data.splitlines()
    assert json.loads(lines[0]) == {
        "format": 2,
        "serial": 42,
        "incomplete": True,
        "pending": {"x": 7, "y": None},
        "projects": len(etags),
    }
    assert [json.loads(line)[0] for line in lines[1:]] == sorted(f"p{i}" for i in range(len(etags)))
    again = MirrorState.from_json(data)
    assert (again.serial, again.incomplete, again.pending) == (42, True, {"x": 7, "y": None})
    assert dict(again.projects.states()) == dict(state.projects.states())
    assert again.to_json() == state.to_json()
    again.projects["p0"] = ProjectState(1, None)
    assert again.to_json() != state.to_json()


@pytest.mark.hostile_class(7)
def test_projects_found_missing_round_trip_and_a_state_without_them_reads_as_before():
    state = MirrorState(serial=3, projects={"a": ProjectState(1, None), "b": ProjectState(2, None)}, missing={"b"})
    header = json.loads(state.to_json().splitlines()[0])
    assert header["missing"] == ["b"]
    assert MirrorState.from_json(state.to_json()).missing == {"b"}
    state.missing.clear()
    assert "missing" not in json.loads(state.to_json().splitlines()[0])  # the header earlier code writes and reads
    assert MirrorState.from_json(state.to_json()).missing == set()


HEADER = b'{"format": 2, "serial": 1, "incomplete": false, "pending": {}, '


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", "unknown format None"),
        (b'{"format": 1, "serial": 1, "incomplete": false, "pending": {}, "projects": {}}\n', "unknown format 1"),
        (b"not json\n", "Expecting value"),
        (HEADER + b'"projects": 2}\n["a", 1, null]\n', "1 projects where the header says 2"),
        (HEADER + b'"projects": 2}\n["a", 1, null]\n["a", 2, null]\n', "'a' is out of order or given twice"),
        (HEADER + b'"projects": 2}\n["b", 1, null]\n["a", 2, null]\n', "'a' is out of order"),
        (b'{"format": 2, "serial": -1, "incomplete": false, "pending": {}, "projects": 0}\n', "-1 is not a serial"),
        (HEADER + b'"projects": 1}\n["a", "1", null]\n', "'1' is not a serial"),
        (HEADER + b'"projects": 1}\n["a", 1]\n', "bad project row"),
        (HEADER + b'"projects": 1}\n["a", 1, 5]\n', "bad ETag"),
        (HEADER + b'"projects": 1}\n["a b", 1, null]\n', "not a normalized"),
        (b'{"format": 2, "serial": 1, "incomplete": false, "projects": 0}\n', "'pending'"),
        (HEADER + b'"projects": 0, "missing": "ab"}\n', "is not a list of names"),
        (HEADER + b'"projects": 0, "missing": ["a b"]}\n', "not a normalized"),
    ],
)
def test_an_unreadable_state_names_the_state_file(data, complaint):
    with pytest.raises(StorageError, match=rf"{STATE_KEY}: unreadable mirror state \(.*{complaint}"):
        MirrorState.from_json(data)


def test_save_and_load_through_storage(tmp_path):
    storage = FolderStorage(tmp_path)
    assert load_state(storage) is None
    state = MirrorState(serial=9, projects={"b": ProjectState(3, '"x"'), "a": ProjectState(None, None)})
    save_state(storage, state)
    loaded = load_state(storage)
    assert loaded is not None
    assert loaded.to_json() == state.to_json()
    assert loaded.etag == storage.head(STATE_KEY).etag  # the version read, as a compare-and-swap needs it
    assert list(loaded.projects) == ["a", "b"]
