"""`plan-service serve` runs the service; `plan-service token` prints a dev bearer token;
`plan-service new-encryption-key` prints a key for PLAN_SERVICE_ENCRYPTION_KEY."""

from __future__ import annotations

import argparse
import sys

from careplan_shared.auth import ROLES, load_or_create_dev_key, mint_token
from plan_service.config import Config, ConfigError


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
    from plan_service.web.server import serve

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
