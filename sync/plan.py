"""What a run syncs: from the state and the change feed (or the root listing, or the allowlist) to a `Plan`."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field

from sync.config import MirrorConfig
from sync.filters import wants_project
from sync.listing import ProjectListing
from sync.models import InvalidInput, normalize_project_name
from sync.progress import Reporter
from sync.state import MirrorState, ProjectState
from sync.upstream import UpstreamClient


@dataclass(frozen=True)
class Plan:
    """Which projects to sync (normalized name → the lowest upstream serial their page may have)."""

    projects: Mapping[str, int | None]
    serial: int | None  # the change-feed serial the mirror reaches once every planned project is synced
    confirmed_removals: Collection[str] = frozenset()  # upstream confirms gone: unlisted, or removed per the feed
    changed_at: Mapping[str, float] = field(default_factory=dict)  # Unix time of each project's newest feed change

    def removal_confirmed(self, name: str, state: MirrorState) -> bool:
        """Whether upstream saying `name` is gone is to be believed now: the listing dropped it, the feed's newest
        change of it removed the project, or the last sync found it gone too."""
        return name in self.confirmed_removals or name in state.missing


def plan_run(config: MirrorConfig, upstream: UpstreamClient, state: MirrorState, reporter: Reporter) -> Plan:
    """Read the change feed (or the root listing, or the allowlist) and decide what to sync."""
    pending: dict[str, int | None] = dict(state.pending)
    if state.serial is not None:
        events = upstream.changelog_events_since(state.serial)
        if events is not None:
            work = pending
            changed_at: dict[str, float] = {}
            removed: dict[str, bool] = {}  # whether each project's newest change removed it
            serial = state.serial
            for event in events:
                serial = max(serial, event.serial)
                normalized = normalized_or_report(event.name, reporter)
                if normalized and wants_project(config, normalized):
                    if event.serial >= (work.get(normalized) or 0):
                        changed_at[normalized] = event.at
                        removed[normalized] = event.removes_project
                    work[normalized] = max(work.get(normalized) or 0, event.serial)
            # Projects added to the allowlist since the last run are not in the feed: sync them too.
            work.update(
                {
                    n: None
                    for n in config.projects
                    if n not in state.projects and n not in work and wants_project(config, n)
                }
            )
            work.update({name: None for name in state.missing if name not in work})  # asked again, to confirm
            confirmed = frozenset(name for name, gone in removed.items() if gone)
            return Plan(work, serial, confirmed, changed_at=changed_at)
    # A mirror that already holds projects but no serial was made from an upstream without a change feed.
    serial = None if state.projects and state.serial is None else upstream.last_serial()
    if config.projects:
        work = {name: None for name in config.projects if wants_project(config, name)}
        return Plan({**work, **pending}, serial)
    listing = upstream.list_projects()
    if not state.projects and not pending and not config.blocklist:
        return Plan(listing, serial)  # a first whole-index run: every listed project, without a second copy
    # Projects the mirror holds that upstream no longer lists: syncing them finds the 404 and removes them.
    unlisted = frozenset(name for name in state.projects if name not in listing)

    def planned() -> Iterator[tuple[str, int | None]]:
        for name, upstream_serial in listing.items():
            if wants_project(config, name) and _outdated(state.projects.get(name), upstream_serial):
                yield name, upstream_serial
        yield from ((name, None) for name in unlisted)
        yield from pending.items()
        yield from ((name, None) for name in state.missing if name in listing)

    # A whole-index plan can name every project upstream: kept as compact as the listing it comes from.
    return Plan(ProjectListing(planned()), serial, unlisted)


def backfill_view(state: MirrorState) -> MirrorState:
    """The state as a plan from the whole listing sees it (no serial): everything upstream not yet held."""
    return MirrorState(projects=state.projects, pending=state.pending, quarantined=state.quarantined)


def normalized_or_report(name: str, reporter: Reporter) -> str | None:
    try:
        return normalize_project_name(name)
    except InvalidInput as error:
        reporter.event("invalid_project", level="warning", error=str(error))
        return None


def _outdated(known: ProjectState | None, upstream_serial: int | None) -> bool:
    """Whether the listing's serial says a project changed since the mirror published it (unknown: assume so)."""
    return known is None or upstream_serial is None or known.serial is None or upstream_serial > known.serial
