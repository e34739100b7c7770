"""PlanApplication: the use cases of plan-service over the event-sourced IndividualPlan.

The plan cache (the library's repository cache, PLAN_SERVICE_CACHE_SIZE) and the write path:

- A write decides its command on the cached plan as this process knows it, without asking the
  store whether it is still current (the library's fast-forward on every ``get``,
  AGGREGATE_CACHE_FASTFORWARD, is off), and on ``copy.copy`` of it: the plan is copy-on-write
  (domain/plan.py), so the cached version is never changed and the copy costs the same
  whatever the plan's length.
- The store's unique (aggregate id, version) catches a stale cache: the commit collides. The
  plan is then brought up to date from the store (the events after the version decided on)
  and, for a request without If-Match, the command is decided once more on it, after the
  caller's access check is asked again (``allowed``); with If-Match the version it names is no
  longer current: 412. Two instances writing one plan lose nothing: every commit is checked.
- A refusal decided on the cached plan (a rule of the plan, an If-Match that does not match)
  is answered only after one look at the store (are there newer events?): a rule is never
  applied to a stale plan. That look costs a round trip on the refusal path only.
- After a commit the library puts the saved version in the cache (``Application._record``
  does so when fast-forwarding is off). The cache never goes back to an older version of an
  aggregate, and keeps no idempotency records (one per keyed write: they would push the plans
  out).
- Reads (``get_plan``) and the small indexes (PatientPlans, PersonPlans) are brought up to
  date with one SELECT of newer events, into a new object: a read on one instance sees a write
  made through another, and a reader holding a plan sees exactly one version of it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, cast

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    Cache,
    LRUCache,
    ProcessingEvent,
    ProjectorFunction,
    Repository,
    project_aggregate,
)
from eventsourcing.persistence import IntegrityError, JSONTranscoder

from careplan_shared.events import IntegrationEvent
from plan_service.application import integration, transcodings
from plan_service.application.committer import GroupCommitter
from plan_service.application.idempotency import IdempotencyRecord
from plan_service.domain.errors import DomainError, PlanNotFound
from plan_service.domain.event_types import COMMANDS
from plan_service.domain.patient_plans import PatientPlans
from plan_service.domain.person_plans import AS_COORDINATOR, AS_RELATIVE, PersonPlans
from plan_service.domain.plan import IndividualPlan, event_type, plain_state


class VersionMismatch(Exception):
    """If-Match named a version that is not the plan's current one (-> 412)."""

    def __init__(self, current: int):
        super().__init__(f"the plan is at version {current}")
        self.current = current


class ConcurrentWrite(Exception):
    """Another writer changed the plan between our read and our write (-> 409)."""


class _Collision(Exception):
    """The store refused the write: an aggregate of it is no longer at the version it was
    decided on (the plan, an index), or the same Idempotency-Key was stored first."""

    def __init__(self, with_indexes: bool):
        super().__init__("the write collided in the store")
        self.with_indexes = with_indexes


INDEX_RETRIES = 3


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was first used for a different request (-> 422)."""


class EventRejected(Exception):
    """One event of a posted list broke a rule; nothing of the list was stored."""

    in_list = False  # set by the API: the events were posted as a JSON list

    def __init__(self, index: int, error: DomainError):
        super().__init__(error.message)
        self.index = index
        self.error = error


@dataclass(frozen=True)
class Idempotency:
    caller: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Outcome:
    """What a write did: enough to answer the request again, byte for byte, on a replay."""

    plan_id: uuid.UUID
    version: int
    events: list[dict[str, Any]]
    created: bool
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"plan_id": str(self.plan_id), "version": self.version,
                "events": self.events, "created": self.created}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(uuid.UUID(data["plan_id"]), data["version"], data["events"], data["created"], True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _NeverOlder:
    """The repository cache's ``put``: never replaces a version with an older one (a load
    that read the store just before a commit must not undo the commit's put), and keeps no
    idempotency records."""

    _put_lock: threading.Lock

    def put(self, key: Any, value: Any) -> None:
        if value is None or isinstance(value, IdempotencyRecord):
            return
        with self._put_lock:
            try:
                cached = super().get(key)  # type: ignore[misc]
            except KeyError:
                cached = None
            if cached is not None and cached is not value and cached.version >= value.version:
                return
            super().put(key, value)  # type: ignore[misc]


class _PlanLRUCache(_NeverOlder, LRUCache[Any, Any]):
    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self._put_lock = threading.Lock()


class _PlanCache(_NeverOlder, Cache[Any, Any]):
    def __init__(self) -> None:
        super().__init__()
        self._put_lock = threading.Lock()


log = logging.getLogger("careplan.plans")

SNAPSHOT_SPACING = 2
# A plan at least this long is snapshotted in a thread of its own (SnapshotWriter), off the
# commit path: encoding it takes long enough to hold up the writes queued behind it.
SNAPSHOT_IN_BACKGROUND_FROM = 1_000


def snapshot_step(version: int, interval: int) -> int:
    """The snapshot interval at ``version``: ``interval`` up to 2 x SNAPSHOT_SPACING x
    ``interval`` events, then doubling as the plan doubles, so that a snapshot always lies
    within ``version / SNAPSHOT_SPACING`` events (a cold load replays at most that many events
    after decoding the snapshot). A snapshot encodes the whole plan: at a fixed interval its
    cost per write would grow with the plan; so it stays about SNAPSHOT_SPACING to twice that
    many entries' worth per write, whatever the plan's length."""
    step = interval
    while version >= step * 2 * SNAPSHOT_SPACING:
        step *= 2
    return step


class SnapshotWriter:
    """Stores snapshots in a thread of its own, in the order given. Safe because a snapshot
    holds the plan's containers, which copy on write never changes. A snapshot is only a
    shortcut for loading: one that fails to be stored (the process ends first, the store is
    away, another instance stored that version) costs a longer load, nothing else."""

    def __init__(self, put: Callable[[list[Any]], Any]):
        self._put = put
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, snapshot: Any) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
                self._thread.start()
            self._queue.append(snapshot)
            self._cond.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted snapshot is stored (or failed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                snapshot = self._queue.popleft()
                self._busy = True
            try:
                self._put([snapshot])
            except IntegrityError:
                pass  # that version's snapshot is already stored
            except Exception as e:  # noqa: BLE001 - a snapshot is a shortcut: log it and go on
                log.warning("could not store a snapshot", extra={"error": type(e).__name__,
                                                                 "version": snapshot.originator_version})
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class PlanApplication(Application):
    name = "PlanService"
    snapshotting_intervals = {IndividualPlan: 100}
    # Writes never wait for a SELECT of newer events (module docstring); reads bring the plan
    # up to date themselves, into a new object. construct_repository holds to this whatever
    # the environment says: the library's fast-forward changes the cached object in place,
    # under the eyes of readers holding it.
    env = {Application.AGGREGATE_CACHE_FASTFORWARD: "n"}

    def __init__(self, env: dict[str, str] | None = None, *, write_batch_max: int = 64,
                 clock: Callable[[], datetime] = _now):
        super().__init__(env)
        self.committer = GroupCommitter(self.save, max_batch=write_batch_max)
        self.snapshot_writer = SnapshotWriter(self._put_snapshots)
        self.clock = clock

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcodings.register(transcoder)

    def construct_repository(self) -> Repository[uuid.UUID]:
        repository = super().construct_repository()
        repository.fastforward = False  # and so Application._record caches what it saved
        if isinstance(repository.cache, LRUCache):
            repository.cache = _PlanLRUCache(repository.cache.maxsize)
        elif repository.cache is not None:
            repository.cache = _PlanCache()
        return repository

    def _take_snapshots(self, processing_event: ProcessingEvent[uuid.UUID]) -> None:
        """Snapshots of what was just saved (``Application.save`` calls this after the commit;
        eventsourcing 9.5.6). Two changes to the library's: the snapshot is taken of the saved
        aggregate in hand, at its version (the library reads it back from the store:
        snapshot and events); and the interval grows with the plan (``snapshot_step``), so
        that what snapshots cost a write does not grow with the plan's length. A snapshot that
        cannot be stored is logged, never raised: the events are stored by then, and an error
        here would make the committer answer stored writes as failed."""
        if self.snapshots is None or not self.snapshotting_intervals:
            return
        versions: dict[uuid.UUID, list[int]] = {}
        for event in processing_event.events:
            versions.setdefault(event.originator_id, []).append(event.originator_version)
        for aggregate_id, aggregate in processing_event.aggregates.items():
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is None or not any(v % snapshot_step(v, interval) == 0 for v in versions.get(aggregate_id, ())):
                continue
            snapshot_class = getattr(type(aggregate), "Snapshot", type(self).snapshot_class)
            if snapshot_class is None:
                continue
            snapshot = snapshot_class.take(aggregate)  # cheap: the state's containers, shared
            if aggregate.version >= SNAPSHOT_IN_BACKGROUND_FROM and isinstance(aggregate, IndividualPlan):
                self.snapshot_writer.submit(snapshot)
                continue
            try:
                self._put_snapshots([snapshot])
            except Exception as e:  # noqa: BLE001 - the write is stored: a failed shortcut must not fail it
                log.warning("could not store a snapshot", extra={"error": type(e).__name__,
                                                                 "version": snapshot.originator_version})

    def take_snapshot(self, aggregate_id: uuid.UUID, version: int | None = None,
                      projector_func: ProjectorFunction[Any, Any] = project_aggregate) -> None:
        """The library's (reads the aggregate back at ``version``), storing plain dicts."""
        if self.snapshots is None:
            super().take_snapshot(aggregate_id, version, projector_func)  # says what is missing
            return
        aggregate = self.repository.get(aggregate_id, version=version, projector_func=projector_func)
        snapshot_class = getattr(type(aggregate), "Snapshot", type(self).snapshot_class)
        if snapshot_class is None:
            super().take_snapshot(aggregate_id, version, projector_func)  # says what is missing
            return
        self._put_snapshots([snapshot_class.take(aggregate)])

    def _put_snapshots(self, snapshots: list[Any]) -> None:
        """Store snapshots, the plan's persistent maps as plain dicts (domain/plan.py): the
        stored form is what it always was, and what an older release reads."""
        if self.snapshots is not None:
            self.snapshots.put([dataclasses.replace(s, state=plain_state(s.state)) for s in snapshots])

    def close(self) -> None:
        self.snapshot_writer.drain()
        super().close()

    # -- writes -------------------------------------------------------------------------

    def open_plan(self, *, patient_id: str, service_level: str, actor: dict[str, str],
                  age_band: str | None = None, birth_date: date | None = None,
                  occurred_at: datetime | None = None,
                  idempotency: Idempotency | None = None) -> Outcome:
        if idempotency and (replay := self._replay(idempotency)):
            return replay
        index = self._patient_plans(patient_id) or PatientPlans.start(patient_id)
        try:
            plan = IndividualPlan.open(
                patient_id=patient_id, service_level=service_level, age_band=age_band,
                birth_date=birth_date, recorded_by=actor, occurred_at=occurred_at or self.clock(),
            )
            index.opened(plan.id)
        except DomainError as e:
            raise EventRejected(0, e) from None
        try:
            return self._commit(plan, index, created=True, idempotency=idempotency)
        except _Collision:
            if idempotency and (replay := self._replay(idempotency)):
                return replay
            # Most likely another plan for this patient was opened at the same moment.
            current = self._patient_plans(patient_id)
            if current is not None and current.open_plan_id is not None:
                try:
                    current.opened(plan.id)
                except DomainError as e:
                    raise EventRejected(0, e) from None
            raise ConcurrentWrite() from None

    def record(self, plan_id: uuid.UUID, items: list[tuple[str, dict[str, Any]]], *,
               actor: dict[str, str], expected_version: int | None = None,
               idempotency: Idempotency | None = None, plan: IndividualPlan | None = None,
               allowed: Callable[[IndividualPlan], bool] | None = None) -> Outcome:
        """Append one or more events to a plan, all or none.

        ``plan``: the plan as the caller read it for its access check (``get_plan(plan_id,
        fresh=False)``: the cached plan, no round trip); never changed, the command works on a
        copy. ``allowed``: that access check, asked again whenever the command has to be
        decided on a newer version (the commit found the cache stale). Without it, a command
        the caller checked on ``plan`` is not decided again on another version: a stale plan
        is then 409 (ConcurrentWrite), and the cache is current for the next try.

        The cached plan is not compared with the store before the command (module docstring):
        the commit's unique (plan, version) does that. On a collision the plan is brought up
        to date; without If-Match the command is decided once more on it; with If-Match the
        version named is no longer current: 412. A refusal (a rule of the plan, If-Match) is
        answered only when the plan it was decided on is the store's newest.

        The indexes an event changes (PatientPlans on closing, PersonPlans when a relative is
        added or a coordinator assigned) are saved in the same atomic write. Another plan's
        write to the same person's index at the same moment is not a conflict of this plan:
        the write is decided again on the plan as it is (it has not moved), a few times."""
        checked = plan is not None
        base = plan if plan is not None else self._plan(plan_id, fresh=False)
        redecided = False
        index_retries = 0

        def decide_again_on(current: IndividualPlan) -> IndividualPlan:
            """The store holds a newer version than the command was decided on: decide once
            more, on it, if the caller's access check still holds there (none given: only if
            the caller checked nothing on ``plan``)."""
            nonlocal redecided
            if redecided or (not allowed(current) if allowed is not None else checked):
                raise ConcurrentWrite()
            redecided = True
            return current

        while True:
            try:
                return self._decide_and_commit(plan_id, base, items, actor=actor,
                                               expected_version=expected_version, idempotency=idempotency)
            except (EventRejected, VersionMismatch):
                if idempotency and (replay := self._replay(idempotency)):
                    return replay
                current = self._newest(base)
                if current is base:
                    raise  # decided on the store's newest version: the answer stands
                if expected_version is not None and current.version != expected_version:
                    raise VersionMismatch(current.version) from None
                base = decide_again_on(current)
            except _Collision as collision:
                if idempotency and (replay := self._replay(idempotency)):
                    return replay
                current = self._newest(base)
                if current is not base:
                    if expected_version is not None:
                        raise VersionMismatch(current.version) from None
                    base = decide_again_on(current)
                elif collision.with_indexes and index_retries < INDEX_RETRIES:
                    # The plan has not moved: an index of this write has (another plan's write
                    # for the same person). The same version, so the access decision holds.
                    index_retries += 1
                else:
                    raise ConcurrentWrite() from None

    def _decide_and_commit(self, plan_id: uuid.UUID, base: IndividualPlan,
                           items: list[tuple[str, dict[str, Any]]], *, actor: dict[str, str],
                           expected_version: int | None, idempotency: Idempotency | None) -> Outcome:
        if expected_version is not None and base.version != expected_version:
            raise VersionMismatch(base.version)
        plan = copy.copy(base)  # the next version: shares base's containers, never changes them
        coordinator_before = plan.coordinator["coordinator_id"] if plan.coordinator else None
        for index, (type_, fields) in enumerate(items):
            fields = dict(fields)
            meta = {"recorded_by": actor, "occurred_at": fields.pop("occurred_at", None) or self.clock()}
            try:
                COMMANDS[type_](plan, **fields, **meta)
            except DomainError as e:
                raise EventRejected(index, e) from None
        others: list[Any] = []
        if plan.closed is not None and any(isinstance(e, IndividualPlan.PlanClosed) for e in plan.pending_events):
            patient_plans = self._patient_plans(plan.patient_id)
            if patient_plans is not None and patient_plans.open_plan_id == plan.id:
                patient_plans.closed(plan.id)
                others.append(patient_plans)
        others.extend(self._person_plans_changed(plan, coordinator_before))
        return self._commit(plan, *others, created=False, idempotency=idempotency)

    def _person_plans_changed(self, plan: IndividualPlan, coordinator_before: str | None) -> list[PersonPlans]:
        """The PersonPlans indexes the plan's pending events change (relatives added,
        coordinators assigned or replaced), changed."""
        changed: dict[str, PersonPlans] = {}

        def index_of(person: str, create: bool) -> PersonPlans | None:
            found = changed.get(person) or self._person_plans(person)
            if found is None and create:
                found = PersonPlans.start(person)
            return found

        coordinator = coordinator_before
        for event in plan.pending_events:
            if isinstance(event, IndividualPlan.CoordinatorAssigned):
                if coordinator is not None and coordinator != event.coordinator_id:
                    previous = index_of(coordinator, create=False)
                    if previous is not None and previous.left(plan.id, AS_COORDINATOR):
                        changed[coordinator] = previous
                new = index_of(event.coordinator_id, create=True)
                assert new is not None  # create=True
                if new.joined(plan.id, AS_COORDINATOR):
                    changed[event.coordinator_id] = new
                coordinator = event.coordinator_id
            elif isinstance(event, IndividualPlan.ParticipantAdded) and event.kind == AS_RELATIVE:
                relative = index_of(event.participant_id, create=True)
                assert relative is not None
                if relative.joined(plan.id, AS_RELATIVE):
                    changed[event.participant_id] = relative
        return list(changed.values())

    def _patient_plans(self, patient_id: str) -> PatientPlans | None:
        """The patient's plan index, as stored now, a copy to change; None for a patient whose
        plans predate it (or who has none)."""
        return cast(PatientPlans | None, self._index(PatientPlans.id_for(patient_id), to_change=True))

    def _person_plans(self, person_id: str) -> PersonPlans | None:
        """The person's PersonPlans, as stored now, a copy to change (None: never indexed)."""
        return cast(PersonPlans | None, self._index(PersonPlans.id_for(person_id), to_change=True))

    def _index(self, index_id: uuid.UUID, *, to_change: bool) -> Any:
        """An index aggregate as stored now (it decides what is written with the plan, so it is
        never taken from the cache unchecked), deep-copied when it is to be changed."""
        try:
            index = self._fetch(index_id, fresh=True)
        except AggregateNotFoundError:
            return None
        return copy.deepcopy(index) if to_change else index

    def _commit(self, plan: IndividualPlan, *others: Any, created: bool,
                idempotency: Idempotency | None) -> Outcome:
        outcome = Outcome(
            plan.id, plan.version,
            [integration.event_ref(cast(IndividualPlan.Event, e)) for e in plan.pending_events], created,
        )
        objs: list[Any] = [plan, *others]
        if idempotency:
            objs.append(IdempotencyRecord.create(
                idempotency.caller, idempotency.key, idempotency.fingerprint, outcome.as_dict()))
        try:
            self.committer.save(*objs)
        except IntegrityError:
            # An aggregate moved on under us, or the same key was stored first: the caller
            # tells them apart.
            raise _Collision(bool(others)) from None
        return outcome

    def _replay(self, idempotency: Idempotency) -> Outcome | None:
        try:
            record: IdempotencyRecord = self.repository.get(IdempotencyRecord.id_for(idempotency.caller, idempotency.key))
        except AggregateNotFoundError:
            return None
        if record.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused()
        return Outcome.from_dict(record.outcome)

    # -- reads --------------------------------------------------------------------------

    def _cached(self, aggregate_id: uuid.UUID) -> Any:
        """The cached version of an aggregate (no round trip), or None."""
        cache = self.repository.cache
        if cache is None:
            return None
        try:
            return cache.get(aggregate_id)
        except KeyError:
            return None

    def _fetch(self, aggregate_id: uuid.UUID, *, fresh: bool) -> Any:
        """An aggregate as this process knows it: the cached version (no round trip), or on a
        miss the store's, which is then cached. ``fresh``: brought up to the store's newest
        version first. Never a copy: cached objects are never changed (copy on write)."""
        known = self._cached(aggregate_id)
        if known is None:
            return self.repository.get(aggregate_id, deepcopy_from_cache=False)
        return self._newest(known) if fresh else known

    def _newest(self, known: Any) -> Any:
        """``known``, a stored version, brought up to the store's newest version (one SELECT of
        the events after it): ``known`` itself when there are none, else a new object, cached;
        ``known`` is left as it is."""
        newer = list(self.events.get(known.id, gt=known.version))
        if not newer:
            return known
        aggregate = project_aggregate(copy.copy(known) if isinstance(known, IndividualPlan) else copy.deepcopy(known),
                                      newer)
        if aggregate is not None and self.repository.cache is not None:
            self.repository.cache.put(aggregate.id, aggregate)
        return aggregate

    def _plan(self, plan_id: uuid.UUID, *, fresh: bool) -> IndividualPlan:
        try:
            plan = self._fetch(plan_id, fresh=fresh)
            if isinstance(plan, IndividualPlan) and plan.pending_events:
                # Changed in place and never saved (not by this application): not a stored
                # version. Forget it and load the plan again.
                cache = self.repository.cache
                if cache is not None:
                    with contextlib.suppress(KeyError):
                        cache.get(plan_id, evict=True)
                plan = self._fetch(plan_id, fresh=fresh)
        except AggregateNotFoundError:
            raise PlanNotFound(plan_id) from None
        if not isinstance(plan, IndividualPlan):
            raise PlanNotFound(plan_id)
        return plan

    def _load(self, plan_id: uuid.UUID, version: int) -> IndividualPlan:
        """The plan as it was at ``version``, from the store."""
        try:
            plan: object = self.repository.get(plan_id, version=version)
        except AggregateNotFoundError:
            raise PlanNotFound(plan_id) from None
        if not isinstance(plan, IndividualPlan):
            raise PlanNotFound(plan_id)
        return plan

    def open_plan_of(self, patient_id: str) -> uuid.UUID | None:
        """The patient's open plan (the PatientPlans index), if any."""
        index = self._index(PatientPlans.id_for(patient_id), to_change=False)
        return index.open_plan_id if index is not None else None

    def plans_of(self, person_id: str) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """The plans the person was added to as a relative, and those they coordinate (the
        PersonPlans index: where they were put; the policy says what they may see now)."""
        index = self._index(PersonPlans.id_for(person_id), to_change=False)
        if index is None:
            return [], []
        return index.as_relative(), index.as_coordinator()

    def get_plan(self, plan_id: uuid.UUID, as_of: datetime | None = None, *, fresh: bool = True) -> IndividualPlan:
        """For reading only: the cached plan itself, never a copy, never changed afterwards
        (copy on write: a new version is a new object), so whoever holds it sees one version.

        ``fresh`` (reads): brought up to the store's newest version first, one SELECT of the
        events after the cached version, so a read sees what another instance wrote.
        ``fresh=False`` (the access check before a write, which hands the plan to ``record``):
        the cached plan as it is, no round trip; ``record`` finds out at commit whether it was
        stale. A write refused on it (403) should ask again with ``fresh=True`` before
        answering: the cached plan may not know yet that the caller was given access."""
        if as_of is None:
            return self._plan(plan_id, fresh=fresh)
        return self._load(plan_id, version=self.version_at(plan_id, as_of))

    def version_at(self, plan_id: uuid.UUID, as_of: datetime) -> int:
        """The plan's version as recorded at ``as_of`` (recording time, not clinical time)."""
        before: int | None = None
        while True:
            page = cast(list[IndividualPlan.Event], list(self.events.get(plan_id, desc=True, lte=before, limit=500)))
            if not page:
                raise PlanNotFound(plan_id)
            for event in page:
                if event.timestamp <= as_of:
                    return event.originator_version
            before = page[-1].originator_version - 1
            if before < 1:
                raise PlanNotFound(plan_id)

    def history(self, plan_id: uuid.UUID, *, up_to: int | None = None,
                visible: Callable[[str], bool] | None = None) -> list[IndividualPlan.Event]:
        """The plan's events, oldest first, up to version ``up_to`` (all: None), those of the
        types ``visible`` passes (a relative's consented sections)."""
        events = cast(list[IndividualPlan.Event], list(self.events.get(plan_id, lte=up_to)))
        if not events:
            raise PlanNotFound(plan_id)
        return [e for e in events if visible is None or visible(event_type(e))]

    def timeline(self, plan_id: uuid.UUID, *, before: int | None = None, limit: int = 50,
                 visible: Callable[[str], bool] | None = None) -> tuple[list[IndividualPlan.Event], int | None]:
        """Newest first; the second value is the cursor for the next page, if any. With a
        test on event types (a relative's consented sections), pages are filled from older
        events."""
        lte = before - 1 if before is not None else None
        chosen: list[IndividualPlan.Event] = []
        while True:
            events = cast(list[IndividualPlan.Event], list(self.events.get(plan_id, desc=True, lte=lte, limit=limit + 1)))
            if not events and before is None and lte is None:
                raise PlanNotFound(plan_id)
            for event in events:
                if visible is None or visible(event_type(event)):
                    chosen.append(event)
                    if len(chosen) > limit:
                        break
            if len(chosen) > limit or len(events) <= limit:
                break
            lte = events[-1].originator_version - 1
        more = len(chosen) > limit
        chosen = chosen[:limit]
        return chosen, (chosen[-1].originator_version if more and chosen else None)

    def integration_events(self, after: int, limit: int) -> list[IntegrationEvent]:
        """Integration events after a log position, in log order."""
        notifications = self.recorder.select_notifications(
            start=after + 1, limit=limit, topics=integration.PLAN_EVENT_TOPICS)
        return [
            integration.to_integration_event(cast(IndividualPlan.Event, self.mapper.to_domain_event(n)), n.id)
            for n in notifications
        ]

    def feed(self, after: int, limit: int) -> tuple[list[IntegrationEvent], int]:
        """Integration events after a position; and the log's last position."""
        return self.integration_events(after, limit), self.recorder.max_notification_id() or 0

    def plan_events(self, plan_id: uuid.UUID) -> Iterable[IndividualPlan.Event]:
        return cast(Iterable[IndividualPlan.Event], self.events.get(plan_id))


__all__ = [
    "ConcurrentWrite", "EventRejected", "Idempotency", "IdempotencyKeyReused", "Outcome",
    "PlanApplication", "VersionMismatch", "event_type",
]
