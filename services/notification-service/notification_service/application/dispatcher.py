"""Delivers prompts through the configured channels from the outbox (the ``deliveries`` rows
written in the same transaction as the prompt), with retries and back-off. A prompt that was
resolved or acknowledged before its turn is not sent."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from notification_service.application.ports import Channel
from notification_service.application.service import Notifications
from notification_service.domain.deliveries import (
    DeliveryError,
    DeliveryKind,
    DeliveryStatus,
    DueDelivery,
    Message,
    backoff,
)
from notification_service.domain.prompts import Prompt, PromptStatus

log = logging.getLogger("careplan.dispatch")
MAX_ATTEMPTS = 8
# How long a claimed delivery is this dispatcher's: longer than a channel's longest attempt
# (webhook and SMTP time out within seconds), short enough that a delivery claimed by an
# instance that died is sent by another soon after.
CLAIM_SECONDS = 60


class Dispatcher:
    def __init__(self, notifications: Notifications, channels: dict[str, Channel], public_url: str,
                 interval: float = 0.5):
        self.notifications = notifications
        self.channels = channels
        self.public_url = public_url.rstrip("/")
        self.interval = interval
        self.sent = 0

    def step(self, limit: int = 50) -> int:
        now = self.notifications.clock.now()
        store = self.notifications.store
        with store.transaction() as tx:  # claimed: another instance's dispatcher does not send them too
            due = tx.claim_deliveries(now, limit, now + timedelta(seconds=CLAIM_SECONDS))
        for delivery in due:
            with store.transaction() as tx:
                prompt = tx.prompt(delivery["prompt_id"])
            attempts = delivery["attempts"] + 1
            channel = self.channels.get(delivery["channel"])
            status, error = DeliveryStatus.SENT, None
            next_attempt: datetime | None = None
            if prompt is None or prompt.status != PromptStatus.OPEN or channel is None:
                status = DeliveryStatus.SKIPPED
            else:
                try:
                    channel.send(self._message(delivery, prompt))
                    self.sent += 1
                except DeliveryError as e:
                    error = str(e)[:300]
                    if e.retryable and attempts < MAX_ATTEMPTS:
                        status = DeliveryStatus.PENDING
                        wait = max(backoff(attempts), getattr(e, "retry_after", None) or 0)
                        next_attempt = now + timedelta(seconds=wait)
                    else:
                        status = DeliveryStatus.FAILED
                    log.warning("delivery failed", extra={"channel": delivery["channel"], "count": attempts})
            with store.transaction() as tx:
                tx.delivery_done(delivery["id"], status, attempts, error, next_attempt)
        return len(due)

    def _message(self, delivery: DueDelivery, prompt: Prompt) -> Message:
        return Message(
            delivery_id=delivery["id"], prompt_id=prompt.id, plan_id=prompt.plan_id,
            recipient=prompt.recipient or "", reason=prompt.rule, due_at=prompt.due_at,
            link=f"{self.public_url}/prompts/{prompt.id}", escalated=delivery["kind"] == DeliveryKind.ESCALATED)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self.step() == 0:
                    stop.wait(self.interval)
            except Exception as e:  # noqa: BLE001 - the store was unreachable: try again later
                log.warning("dispatch failed", extra={"error_type": type(e).__name__})
                stop.wait(self.interval * 4)
