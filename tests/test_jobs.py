"""Project jobs as queue messages: round trip, optional fields, bad bodies named."""

from __future__ import annotations

import pytest

from sync.jobs import JobError, ProjectJob
from sync.state import ProjectState


# ------------------------------------------------------------------------------------------------ jobs
def test_job_messages_round_trip_and_bad_ones_are_named():
    job = ProjectJob("foo-bar", 1234, 1700000000.5)
    assert ProjectJob.from_message(job.to_message()) == job
    confirming = ProjectJob("foo-bar", confirm_removal=True)
    assert ProjectJob.from_message(confirming.to_message()) == confirming
    assert ProjectJob.from_message('{"project": "Foo_Bar"}') == ProjectJob("foo-bar")
    for body in (
        "not json",
        '{"serial": 1}',
        '{"project": "../x"}',
        '{"project": "a", "serial": "1"}',
        '{"project": "a", "serial": true}',
        '{"project": "a", "changed_at": "now"}',
        '{"project": "a", "confirm_removal": 1}',
    ):
        with pytest.raises(JobError, match="is not a project job"):
            ProjectJob.from_message(body)


def test_a_job_carries_what_the_state_knows_and_an_old_message_still_parses():
    job = ProjectJob("tiny", 7, known=ProjectState(6, '"abc"'), fresh=False, retry=True)
    assert ProjectJob.from_message(job.to_message()) == job
    old = '{"project": "tiny", "serial": 7, "changed_at": null, "confirm_removal": false}'  # before `known`
    assert ProjectJob.from_message(old) == ProjectJob("tiny", 7)
    with pytest.raises(JobError, match="known"):
        ProjectJob.from_message('{"project": "tiny", "known": [1]}')
