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
    sub.add_parser("dead-letters", help="print the dead-lettered events (position, reason)")
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    if args.command == "dead-letters":
        from notification_service.bootstrap import bootstrap

        for row in bootstrap(config, with_workers=False).notifications.dead_letters(1000):
            print(row)
        return 0

    def load():
        from notification_service.web.app import create_app

        logs.configure("notification-service", config.log_level)
        app = create_app(config)
        app.extensions["careplan"].start_workers()
        return app

    base = f"http://{config.host}:{config.port}"
    source = config.plan_service_url + "/v1/feed" if config.transport == "feed" else f"kafka {config.kafka_topic}"
    # One worker process: the consumer, the clock and the dispatcher run once.
    server.serve(load, host=config.host, port=config.port, workers=1, threads=8,
                 ready_message=f"notification-service ready: {base}  (inbox {base}/v1/prompts, docs {base}/docs; "
                               f"events from {source}; store: {config.persistence})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
