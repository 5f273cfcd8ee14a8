"""The destination lease on both backends: one holder at a time, expiry and takeover, renew, release, races."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

import pytest

from sync.layout import LEASE_KEY
from sync.lease import Lease, LeaseHeld, LeaseLost, acquire
from sync.storage import Storage, open_storage
from tests import s3proxy


@pytest.fixture(params=["folder", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "folder":
        return open_storage(str(tmp_path / "dest"))
    s3 = request.getfixturevalue("s3_dest")
    return open_storage(s3.dest, endpoint_url=s3.endpoint_url)


def stored_lease(storage: Storage) -> dict[str, str] | None:
    found = storage.get_bytes(LEASE_KEY)
    return json.loads(found[0]) if found else None


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def race(count: int, attempt) -> tuple[list[Lease], list[LeaseHeld]]:
    """Run `attempt()` in `count` threads released at once; returns (leases won, LeaseHeld raised)."""
    barrier = threading.Barrier(count, timeout=10)
    won: list[Lease] = []
    refused: list[LeaseHeld] = []

    def contend() -> None:
        barrier.wait()
        try:
            won.append(attempt())
        except LeaseHeld as error:
            refused.append(error)

    threads = [threading.Thread(target=contend) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return won, refused


def test_acquire_writes_owner_and_expiry(storage):
    before = time.time()
    lease = acquire(storage, owner="host:1", ttl=600)
    record = stored_lease(storage)
    assert record["owner"] == "host:1"
    assert before <= seconds(record["acquired_at"]) <= time.time()
    assert seconds(record["expires_at"]) - seconds(record["acquired_at"]) == pytest.approx(600, abs=1e-3)
    assert lease.expires_at == pytest.approx(seconds(record["expires_at"]), abs=1e-3)
    assert record["expires_at"].endswith("Z")


def test_a_live_lease_refuses_a_second_run_with_a_clear_message(storage):
    acquire(storage, owner="nightly-job", ttl=600)
    with pytest.raises(LeaseHeld) as raised:
        acquire(storage, owner="host:2", ttl=600)
    message = str(raised.value)
    assert "'nightly-job'" in message
    assert stored_lease(storage)["expires_at"] in message
    assert storage.describe() in message
    assert f"delete {LEASE_KEY}" in message
    assert stored_lease(storage)["owner"] == "nightly-job"


def test_an_expired_lease_is_taken_over_and_its_holder_loses_it(storage):
    crashed = acquire(storage, owner="crashed", ttl=0.05)
    time.sleep(0.1)
    taker = acquire(storage, owner="taker", ttl=600)
    assert stored_lease(storage)["owner"] == "taker"
    with pytest.raises(LeaseLost, match="taken over"):
        crashed.renew()
    assert crashed.release() is False
    assert stored_lease(storage)["owner"] == "taker"  # the loser's release leaves the new lease alone
    assert taker.release() is True
    assert stored_lease(storage) is None


def test_renew_pushes_the_expiry(storage):
    lease = acquire(storage, owner="me", ttl=600)
    first = stored_lease(storage)
    time.sleep(0.01)
    lease.renew()
    lease.renew()
    record = stored_lease(storage)
    assert seconds(record["expires_at"]) > seconds(first["expires_at"])
    assert record["acquired_at"] == first["acquired_at"]
    assert lease.expires_at == pytest.approx(seconds(record["expires_at"]), abs=1e-3)


def test_renew_after_an_expiry_nobody_used_keeps_the_lease(storage):
    lease = acquire(storage, owner="slow", ttl=0.05)
    time.sleep(0.1)
    lease.ttl = 600  # the renewed lease must outlast the check below, however loaded the machine
    lease.renew()  # nobody took it over: still ours
    with pytest.raises(LeaseHeld, match="'slow'"):
        acquire(storage, owner="other", ttl=600)


def test_release_and_context_manager(storage):
    with acquire(storage, owner="first", ttl=600) as lease:
        assert stored_lease(storage)["owner"] == "first"
    assert stored_lease(storage) is None
    assert lease.release() is False  # already released
    with pytest.raises(LeaseLost, match="released"):
        lease.renew()
    assert stored_lease(storage) is None
    second = acquire(storage, owner="second", ttl=600)  # free again
    assert second.release() is True


def test_two_runs_racing_for_a_free_lease_one_wins(storage):
    won, refused = race(2, lambda: acquire(storage, owner=f"run-{threading.get_ident()}", ttl=600))
    assert len(won) == 1
    assert len(refused) == 1
    assert stored_lease(storage)["owner"] == won[0].owner


def test_runs_racing_for_an_expired_lease_one_wins(storage):
    acquire(storage, owner="crashed", ttl=0.01)
    time.sleep(0.05)
    won, refused = race(4, lambda: acquire(storage, owner=f"run-{threading.get_ident()}", ttl=600))
    assert len(won) == 1
    assert len(refused) == 3
    assert stored_lease(storage)["owner"] == won[0].owner
    assert all(won[0].owner in str(error) or "lost the race" in str(error) for error in refused)


def test_an_unreadable_lease_is_not_stolen(storage):
    storage.put_bytes(LEASE_KEY, b"{not json", content_type="application/json", cache_control="no-store")
    with pytest.raises(LeaseHeld, match="unreadable lease"):
        acquire(storage, owner="me", ttl=600)
    assert storage.get_bytes(LEASE_KEY)[0] == b"{not json"


def test_ttl_must_be_positive(storage):
    with pytest.raises(ValueError, match="ttl must be positive"):
        acquire(storage, owner="me", ttl=0)


# ----------------------------------------------------------------------------------------- S3 requests
@pytest.fixture
def proxied(s3_proxy_dest):
    store = open_storage(s3_proxy_dest.dest, endpoint_url=s3_proxy_dest.endpoint_url)
    s3_proxy_dest.proxy.reset_counts()
    return store, s3_proxy_dest


def test_s3_lease_costs_one_request_to_take_and_one_to_release(proxied):
    store, s3 = proxied
    with acquire(store, owner="me", ttl=600):
        assert s3.counts == {"PUT": 1}
    assert s3.counts == {"PUT": 1, "DELETE": 1}


def test_s3_lost_answer_to_our_own_write_still_wins(proxied, monkeypatch):
    """The PUT lands but its answer is lost; botocore retries, S3 answers 412 against our own write: still ours."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)
    store, s3 = proxied
    s3.proxy.inject("PUT", "lease", s3proxy.LOSE_RESPONSE, times=1)
    lease = acquire(store, owner="me", ttl=600)
    s3.proxy.inject("PUT", "lease", s3proxy.LOSE_RESPONSE, times=1)
    lease.renew()
    assert s3.counts["PUT"] == 4  # two writes, each sent twice
    assert stored_lease(store)["owner"] == "me"
    assert lease.release() is True


class Interrupted:
    """A storage where the run is interrupted (Ctrl-C, SIGTERM) during the lease write: after it lands (`landed`),
    or before it is sent."""

    def __init__(self, inner: Storage, *, landed: bool):
        self.inner = inner
        self.landed = landed

    def put_bytes(self, key: str, body: bytes, **kwargs) -> str:
        if self.landed:
            self.inner.put_bytes(key, body, **kwargs)
        raise KeyboardInterrupt

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.mark.hostile_class(6)
def test_an_interrupt_while_the_lease_write_lands_leaves_no_lease(storage: Storage) -> None:
    with pytest.raises(KeyboardInterrupt):
        acquire(Interrupted(storage, landed=True), owner="me", ttl=60)  # type: ignore[arg-type]
    assert stored_lease(storage) is None
    acquire(storage, owner="other", ttl=60).release()  # nothing left to wait for


def test_an_interrupt_never_deletes_another_runs_lease(storage: Storage) -> None:
    held = acquire(storage, owner="other", ttl=60)
    with pytest.raises(KeyboardInterrupt):
        acquire(Interrupted(storage, landed=False), owner="me", ttl=60)  # type: ignore[arg-type]
    assert stored_lease(storage)["owner"] == "other"  # type: ignore[index]
    assert held.release()
