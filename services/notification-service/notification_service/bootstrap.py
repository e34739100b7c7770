"""Wire the adapters into the application. Tests call it with their own Config and clock."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from careplan_shared.auth import DevTokenVerifier, load_or_create_dev_key, mint_token
from careplan_shared.oidc import verifier_from_env
from notification_service.adapters.crypto import Cipher, decode_key, load_or_create_key
from notification_service.adapters.store import PostgresStore, SQLiteStore
from notification_service.application.consumer import Consumer
from notification_service.application.service import Clock, Notifications
from notification_service.config import Config


@dataclass
class Services:
    config: Config
    notifications: Notifications
    verifier: Any  # DevTokenVerifier, or production issuers' (careplan_shared.oidc)
    consumer: Consumer | None = None
    dispatcher: Any = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    def start_workers(self) -> None:
        """Consume events, run the clock and deliver prompts, in threads of this process."""
        if self._threads:
            return
        loops = [("consumer", self.consumer.run if self.consumer else None),
                 ("ticker", self._tick_loop),
                 ("dispatcher", self.dispatcher.run if self.dispatcher else None)]
        for name, target in loops:
            if target is not None:
                thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _tick_loop(self, stop: threading.Event) -> None:
        import logging

        while not stop.wait(self.config.tick_seconds):
            try:
                self.notifications.tick()
            except Exception as e:  # noqa: BLE001 - the store was unreachable: next turn
                logging.getLogger("careplan.clock").warning("tick failed", extra={"error_type": type(e).__name__})

    def stop_workers(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)


def tune_gc() -> None:
    """Garbage collection for a consumer that holds a whole batch's views and prompts (up to
    2,000 events) while it applies them: what start-up made (modules, schemas, clients) is
    frozen out of the collector's scans, and the youngest generation is collected every
    10,000 new container objects instead of 700. Reference counting still frees everything
    that is not in a cycle at once. Measured on a replay: about a sixth less CPU an event."""
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def make_cipher(config: Config) -> Cipher:
    """Encrypted by default: the configured key, else one made on first run under the data dir
    (with PostgreSQL and several hosts, give them all NOTIFICATION_ENCRYPTION_KEY instead)."""
    if config.encryption_key:
        return Cipher(decode_key(config.encryption_key))
    return Cipher(load_or_create_key(config.store_key_file))


def make_store(config: Config, *, migrate: bool = True):
    """``migrate``: bring the store to the newest schema revision first (adapters/migrations)."""
    cipher = make_cipher(config)
    if config.persistence == "postgres":
        assert config.database_url is not None  # Config.from_env demands it for postgres
        return PostgresStore(config.database_url, cipher=cipher, migrate=migrate)
    # the default file lives in the service's own folder: that folder is made private too
    return SQLiteStore(config.sqlite_file, cipher, private_dir=config.sqlite_path is None, migrate=migrate)


def make_source(config: Config, key: bytes):
    if config.transport == "kafka":
        from notification_service.adapters.sources import KafkaSource

        assert config.kafka_bootstrap_servers is not None  # Config.from_env demands it for kafka
        return KafkaSource(config.kafka_bootstrap_servers, config.kafka_topic, config.kafka_group,
                           instance_id=config.kafka_instance_id)
    from notification_service.adapters.sources import FeedSource

    if config.feed_token:
        feed_token = config.feed_token
        return FeedSource(config.plan_service_url, lambda: feed_token)
    # Embedded default: a short-lived integration token signed with the shared dev key.
    cache: dict[str, Any] = {}

    def token() -> str:
        import time

        if cache.get("until", 0) < time.time() + 60:
            cache["token"] = mint_token(key, "notification-service", "integration", ttl_seconds=3600)
            cache["until"] = time.time() + 3600
        return cache["token"]

    return FeedSource(config.plan_service_url, token)


def make_channels(config: Config) -> dict[str, Any]:
    from notification_service.adapters.channels import SmtpChannel, WebhookChannel

    channels: dict[str, Any] = {}
    if config.webhook_url:
        assert config.webhook_secret is not None  # Config.from_env demands it with a webhook
        channels["webhook"] = WebhookChannel(config.webhook_url, config.webhook_secret.encode())
    if config.smtp_host:
        template = config.email_address_template
        channels["email"] = SmtpChannel(config.smtp_host, config.smtp_port, config.smtp_sender,
                                        lambda recipient: template.format(recipient=recipient) if template else None)
    return channels


def bootstrap(config: Config, *, clock: Clock | None = None, with_workers: bool | None = None,
              migrate: bool = True) -> Services:
    """``migrate``: in-process users (tests, the `dead-letters` command) keep the default; `serve`
    migrates once before its worker starts, and the worker passes False: it never creates a table."""
    key = load_or_create_dev_key(config.signing_key_file)
    notifications = Notifications(make_store(config, migrate=migrate), config.rules, clock, config.channels)
    services = Services(config, notifications, verifier_from_env(config.oidc, DevTokenVerifier(key)))
    if with_workers if with_workers is not None else config.worker:
        # back-off after a failed fetch: 0.2 s doubling to 1 s (not 10 s), so that the consumer
        # is reading again within about a second of the broker being back (issue 13)
        services.consumer = Consumer(make_source(config, key), notifications, max_backoff=1.0)
        if config.channels:  # the inbox needs no dispatcher; webhook and e-mail do
            from notification_service.application.dispatcher import Dispatcher

            services.dispatcher = Dispatcher(notifications, make_channels(config), config.public_url)
    return services
