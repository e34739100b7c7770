"""`notification-service serve`: the inbox API plus, in the same process, the consumer,
the clock and the dispatcher (NOTIFICATION_WORKER=on, the default)."""

from __future__ import annotations

import argparse
import sys

from careplan_shared import logs, server
from careplan_shared.config import ConfigError
from notification_service.config import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notification-service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (configured by environment variables)")
    sub.add_parser("migrate", help="bring the store to the newest schema revision and print it "
                                   "(serve does it too, before it starts)")
    dead = sub.add_parser("dead-letters", help="print the open dead-lettered events (position, reason), "
                                               "or retry them after a fix")
    dead.add_argument("action", nargs="?", choices=("list", "retry"), default="list",
                      help="list (default): print them; retry: apply them again in position order, "
                           "mark those that now work resolved")
    dead.add_argument("--all", action="store_true", help="list: the resolved ones too")
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    if args.command == "dead-letters":
        return _dead_letters(config, args.action, args.all)
    if args.command == "serve":
        from careplan_shared import metrics

        try:  # before anything imports prometheus_client: its multiprocess mode, if metrics are on
            metrics.prepare_multiprocess("notification-service", config.data_dir, config.port)
        except ConfigError as e:
            print(f"configuration error: {e}", file=sys.stderr)
            return 2
    code = _migrate(config, quiet=args.command == "serve")  # serve: once, before the worker forks
    if args.command == "migrate" or code:
        return code

    def load():
        from notification_service.bootstrap import bootstrap, tune_gc
        from notification_service.web.app import create_app

        logs.configure("notification-service", config.log_level)
        app = create_app(config, bootstrap(config, migrate=False))  # migrated above, in the master
        tune_gc()
        app.extensions["careplan"].start_workers()
        return app

    base = f"http://{config.host}:{config.port}"
    source = config.plan_service_url + "/v1/feed" if config.transport == "feed" else f"kafka {config.kafka_topic}"
    # One worker process: the consumer, the clock and the dispatcher run once.
    server.serve(load, host=config.host, port=config.port, workers=1, threads=8,
                 ready_message=f"notification-service ready: {base}  (inbox {base}/v1/prompts, docs {base}/docs; "
                               f"events from {source}; store: {config.persistence})")
    return 0


def _migrate(config: Config, *, quiet: bool = False) -> int:
    from notification_service.adapters.migrations import database_for, migrate_database

    database = database_for(config)
    try:
        revision = migrate_database(database)
    except Exception as e:  # noqa: BLE001 - unreachable, refused, a failed revision: say so and stop
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"notification-service migrate: {database} failed: {type(e).__name__}: {reason}", file=sys.stderr)
        return 1
    if not quiet:
        print(f"notification-service store ({database}): revision {', '.join(revision)}")
    return 0


def _dead_letters(config: Config, action: str, everything: bool) -> int:
    from notification_service.adapters.crypto import StoreUnreadable
    from notification_service.bootstrap import bootstrap
    from notification_service.domain.dead_letters import DeadLetterStatus

    logs.configure("notification-service", config.log_level)
    try:
        notifications = bootstrap(config, with_workers=False).notifications
        if action == "list":
            for row in notifications.dead_letters(1000, None if everything else DeadLetterStatus.OPEN):
                print(row)
            return 0
        summary = notifications.retry_dead_letters()
    except StoreUnreadable:
        print("the store cannot be read with this key (NOTIFICATION_ENCRYPTION_KEY / _FILE)", file=sys.stderr)
        return 2
    print(f"retried {summary['retried']}, resolved {summary['resolved']}, still failing {summary['still_failing']}")
    return 1 if summary["still_failing"] else 0


if __name__ == "__main__":
    sys.exit(main())
