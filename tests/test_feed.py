"""The XML-RPC change feed through the client: paging, malformed rows, no XML-RPC, broken answers."""

from __future__ import annotations

import logging
import xmlrpc.client

import pytest

from sync.transport import UpstreamError
from tests.upstream.index import BASE_SERIAL
from tests.upstream.scripted import client_for


def names_and_serials(events):
    return [(event.name, event.serial) for event in events]


def test_changelog_since_returns_names_and_serials(upstream, fake_index):
    start = fake_index.serial
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"two", version="2.0")
    fake_index.yank("Foo_Bar", "foo_bar-1.0.tar.gz")
    client = client_for(upstream)
    assert names_and_serials(client.changelog_events_since(start)) == [("tiny", start + 1), ("Foo_Bar", start + 2)]
    assert client.changelog_events_since(start + 1) == [
        ("Foo_Bar", start + 2, float(int(fake_index.timestamp(start + 2).timestamp())), False)
    ]
    assert client.last_serial() == start + 2
    assert client.changelog_events_since(start + 2) == []


def test_a_removed_project_is_marked_in_its_change(upstream, fake_index):
    start = fake_index.serial
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"two", version="2.0")
    fake_index.remove_project("tiny")
    events = client_for(upstream).changelog_events_since(start)
    assert [(event.name, event.removes_project) for event in events] == [("tiny", False), ("tiny", True)]


def test_changelog_asks_again_while_answers_are_full(upstream, fake_index, monkeypatch):
    monkeypatch.setattr("tests.upstream.server.XMLRPC_MAX_ROWS", 3)
    monkeypatch.setattr("sync.feed.CHANGELOG_PAGE_ROWS", 3)
    changes = client_for(upstream).changelog_events_since(BASE_SERIAL)
    assert [event.serial for event in changes] == list(range(BASE_SERIAL + 1, fake_index.serial + 1))
    assert upstream.count("/pypi", method="POST") == 3  # 3 + 3 + 1 rows


@pytest.mark.hostile_class(2)
def test_a_malformed_changelog_row_is_skipped_with_one_log_line(upstream, caplog):
    rows = [["tiny", "1.0", "yesterday", "create", 5], ["tiny", "1.0", 1_700_000_000, "create", 1234567], ["six"]]
    answer = xmlrpc.client.dumps(([*rows, ["tiny", "1.1", 1_700_000_000, "create", 7]],), methodresponse=True)
    answer = answer.replace("<int>1234567</int>", f"<i8>{2**63}</i8>")  # past what xmlrpc.client.dumps writes
    upstream.override_path("/pypi", answer.encode(), "text/xml")
    with caplog.at_level(logging.WARNING, logger="sync.feed"):
        assert names_and_serials(client_for(upstream).changelog_events_since(BASE_SERIAL)) == [("tiny", 7)]
    skipped = [record.getMessage() for record in caplog.records]
    assert len(skipped) == 3
    assert all("/pypi: skipping malformed changelog row [" in line for line in skipped)
    assert "9223372036854775808" in skipped[1]


def test_no_xmlrpc_means_no_change_feed(upstream):
    upstream.xmlrpc_enabled = False
    client = client_for(upstream)
    assert client.changelog_events_since(BASE_SERIAL) is None
    assert client.last_serial() is None


def test_a_broken_xmlrpc_answer_is_an_upstream_error(upstream):
    upstream.override_path("/pypi", b"<methodResponse><params>", "text/xml")
    with pytest.raises(UpstreamError, match=r"/pypi: malformed answer to changelog_last_serial"):
        client_for(upstream).last_serial()
