"""`plan-service serve` runs the service; `plan-service token` prints a dev bearer token;
`plan-service new-encryption-key` prints a key for PLAN_SERVICE_ENCRYPTION_KEY;
`plan-service demo` makes a synthetic plan to look at in the pages."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from careplan_shared.auth import ROLES, load_or_create_dev_key, mint_token
from plan_service.config import Config, ConfigError

if TYPE_CHECKING:
    from plan_service.application.plans import PlanApplication


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plan-service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP service (configured by environment variables)")
    sub.add_parser("migrate", help="bring the store to the newest schema revision and print it "
                                   "(serve does it too, before its workers start)")
    sub.add_parser("relay", help="run only the relay: notification log -> Kafka (needs KAFKA_BOOTSTRAP_SERVERS)")
    token = sub.add_parser("token", help="print a bearer token signed with the dev key")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--sub", required=True, help="the caller's id (for a patient: patient_id)")
    token.add_argument("--on-behalf-of", help="integration tokens: the clinician the EPR acts for")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="seconds (default 8 h)")
    new_key = sub.add_parser("new-encryption-key",
                             help="print a new random key for PLAN_SERVICE_ENCRYPTION_KEY (base64)")
    new_key.add_argument("--bytes", type=int, default=32, choices=(16, 24, 32),
                         help="AES key size in bytes (default 32: AES-256)")
    sub.add_parser("demo", help="make a synthetic plan for the development login's patient pat-a1 (once; "
                                "nothing if pat-a1 has an open plan)")
    args = parser.parse_args(argv)

    if args.command == "new-encryption-key":  # needs no configuration
        from eventsourcing.cryptography import AESCipher

        print(AESCipher.create_key(args.bytes))
        return 0

    try:
        config = Config.from_env()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    if args.command == "token":
        key = load_or_create_dev_key(config.signing_key_file)
        print(mint_token(key, args.sub, args.role, ttl_seconds=args.ttl,
                         on_behalf_of=args.on_behalf_of))
        return 0
    if args.command == "migrate":
        return migrate(config)
    if args.command == "relay":
        return run_relay(config)
    if args.command == "demo":
        return demo(config)
    from careplan_shared import metrics
    from plan_service.web.server import serve

    try:  # before anything imports prometheus_client: its multiprocess mode, if metrics are on
        metrics.prepare_multiprocess("plan-service", config.data_dir, config.port)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    serve(config)
    return 0


def migrate(config: Config, *, quiet: bool = False) -> int:
    """Bring the configured store to the newest revision (adapters/migrations); print it."""
    from plan_service.adapters.migrations import migrate as migrate_store

    try:
        revisions = migrate_store(config)
    except Exception as e:  # noqa: BLE001 - unreachable, refused, a failed revision: say so and stop
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"plan-service migrate: {config.persistence} store failed: {type(e).__name__}: {reason}",
              file=sys.stderr)
        return 1
    if not quiet:
        found = "; ".join(f"{name} revision {', '.join(heads)}" for name, heads in revisions.items())
        print(f"plan-service store ({config.persistence}): {found or 'in memory, nothing to migrate'}")
    return 0


DEMO_PATIENT = "pat-a1"


def demo(config: Config) -> int:
    """A synthetic plan for pat-a1 (coordinator k1, relative rel-b1 with consent for goals),
    made through PlanApplication like any other: every rule of the plan holds. Idempotent:
    nothing is made while pat-a1 has an open plan."""
    from plan_service.bootstrap import bootstrap

    plan_id, made = make_demo(bootstrap(config).plans)
    if not made:
        print(f"demo: {DEMO_PATIENT} already has a plan ({plan_id}); nothing made")
        return 0
    print(f"demo: plan {plan_id} for {DEMO_PATIENT} (synthetic):\n"
          "  coordinator k1 (Kari Koordinator); a professional at the DPS; relative rel-b1 (Bjørn), "
          "consent for goals for a year\n"
          "  what matters to pat-a1; goals g1 (revised) and g2 (achieved); information given orally and in writing\n"
          "  an evaluation held and one upcoming; a triangle meeting held and one upcoming (wishes: place, "
          "transport, someone to come along; what to do if Ada does not come)\n"
          "Log in at /login as Ada (pat-a1), Bjørn (rel-b1) or Kari (k1).")
    return 0


def make_demo(plans: PlanApplication) -> tuple[Any, bool]:
    """-> (pat-a1's open plan id, whether it was made now)."""
    from datetime import datetime, timedelta, timezone

    from careplan_shared.auth import Principal
    from plan_service.api import schemas

    existing = plans.open_plan_of(DEMO_PATIENT)
    if existing is not None:
        return existing, False
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)

    def at(days: float, hour: int = 10) -> str:
        return (now + timedelta(days=days)).replace(hour=hour, minute=0).isoformat()

    epr = Principal("epr-demo", "integration", on_behalf_of="clin-demo").actor
    opened = plans.open_plan(patient_id=DEMO_PATIENT, service_level="municipal", age_band="18-25", actor=epr,
                             occurred_at=datetime.fromisoformat(at(-150, 9)))
    clinician_events = [
        {"type": "CoordinatorAssigned", "coordinator_id": "k1", "name": "Kari Koordinator",
         "service_level": "municipal", "occurred_at": at(-149)},
        {"type": "ParticipantAdded", "participant_id": "dps-1", "kind": "professional", "name": "Behandler ved DPS",
         "service_level": "specialist", "occurred_at": at(-148)},
        {"type": "ParticipantAdded", "participant_id": "rel-b1", "kind": "relative", "name": "Bjørn Testesen",
         "relation": "bror", "occurred_at": at(-148)},
        {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
         "description": "Retten til individuell plan og til å ha en koordinator", "occurred_at": at(-147)},
        {"type": "GoalSet", "goal_id": "g1", "text": "Jobbe to dager i uka", "expressed_by": "patient",
         "target_date": at(120)[:10], "occurred_at": at(-140)},
        {"type": "GoalSet", "goal_id": "g2", "text": "Sove bedre om natta", "expressed_by": "clinician",
         "occurred_at": at(-140)},
        {"type": "InformationGiven", "information_id": "i2", "topic": "offered_help", "form": "written",
         "description": "Oversikt over hjelpen du kan få fra DPS og kommunen", "adapted_how": "Enkelt språk, på papir",
         "occurred_at": at(-135)},
        {"type": "EvaluationScheduled", "evaluation_id": "e1", "scheduled_for": at(-60), "occurred_at": at(-120)},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": at(-90, 13),
         "place": "Kafeen ved biblioteket", "transport": "Bussbillett fra kommunen", "companion": "Bjørn (bror)",
         "no_show_strategy": "Koordinator ringer samme dag, og kommer på hjemmebesøk dagen etter",
         "occurred_at": at(-100)},
        {"type": "TriangleMeetingHeld", "meeting_id": "m1", "outcome": "Enige om å møtes hver fjortende dag",
         "occurred_at": at(-90, 14)},
        {"type": "GoalRevised", "goal_id": "g1", "text": "Jobbe én dag i uka først, så to",
         "reason": "Et mer realistisk første steg", "occurred_at": at(-60, 11)},
        {"type": "EvaluationHeld", "evaluation_id": "e1", "outcome": "Planen fungerer; målet om jobb er justert",
         "patient_took_part": True, "participants": ["Kari Koordinator", "Behandler ved DPS"],
         "occurred_at": at(-60, 11)},
        {"type": "GoalAchieved", "goal_id": "g2", "occurred_at": at(-20)},
        {"type": "EvaluationScheduled", "evaluation_id": "e2", "scheduled_for": at(60), "occurred_at": at(-5)},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m2", "scheduled_for": at(14, 12), "place": "Hjemme hos Ada",
         "companion": "Bjørn (bror)",
         "no_show_strategy": "Koordinator ringer samme dag, og kommer på hjemmebesøk dagen etter",
         "occurred_at": at(-5)},
    ]
    patient_events = [
        {"type": "WhatMattersRecorded", "text": "Å ha noe å stå opp til om morgenen, og å se broren min oftere.",
         "language": "nb"},
        {"type": "RelativeConsentGiven", "relative_id": "rel-b1", "scope": ["goals"], "valid_until": at(365)},
    ]
    plans.record(opened.plan_id, schemas.load_events(clinician_events), actor=epr)
    plans.record(opened.plan_id, schemas.load_events(patient_events), actor=Principal(DEMO_PATIENT, "patient").actor)
    return opened.plan_id, True


def run_relay(config: Config) -> int:
    import signal
    import threading

    from careplan_shared import logs
    from plan_service.bootstrap import bootstrap

    if not config.kafka_bootstrap_servers:
        print("configuration error: the relay needs KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    logs.configure("plan-service-relay", config.log_level)
    services = bootstrap(config, with_relay=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"relay: {config.persistence} -> kafka {config.kafka_bootstrap_servers} "
          f"topic {config.kafka_topic}", file=sys.stderr, flush=True)
    assert services.relay is not None  # with_relay=True builds one
    services.relay.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
