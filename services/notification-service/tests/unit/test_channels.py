"""The webhook channel against a real HTTP server on 127.0.0.1 (in a thread), the signature a
receiver checks, back-off, and the parts of the e-mail channel that need no mail server
(rendering, the retryable/permanent classification of SMTP errors)."""

from __future__ import annotations

import json
import logging
import random
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from notification_service.adapters.channels import (
    REASON_PHRASES,
    DeliveryError,
    Message,
    SmtpChannel,
    WebhookChannel,
    _smtp_error,
    backoff,
    human_reason,
    sign,
    verify_signature,
)

SECRET = b"webhook-test-secret"
CONTRACT = {"delivery_id", "prompt_id", "plan_id", "recipient", "reason", "due_at", "link", "escalated", "sent_at"}
DUE = datetime(2026, 3, 2, 22, 59, 59, tzinfo=timezone.utc)


def make_message(**changes: Any) -> Message:
    fields: dict[str, Any] = dict(
        delivery_id="d-0001", prompt_id="p-0001", plan_id="8a1c9a0e-4b7e-4a55-9d7c-3f1f0e6f2b11",
        recipient="coord-17", reason="no_show_follow_up", due_at=DUE,
        link="https://careplan.example/v1/prompts/p-0001")
    fields.update(changes)
    return Message(**fields)


# -- a real HTTP receiver ----------------------------------------------------------------

class Receiver:
    """Records every request; answers as told: a status (with headers), or "slow" (no answer
    until released, so the client times out)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.headers: dict[str, str] = {}
        self.slow = False
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()),
                                          "body": body})
                if receiver.slow:
                    receiver.release.wait(5)
                    return  # the client gave up long ago: no answer
                try:
                    self.send_response(receiver.status)
                    for name, value in receiver.headers.items():
                        self.send_header(name, value)
                    payload = b'{"echo":"must never be read"}'
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/careplan"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                       daemon=True)

    def answer(self, status: int, **headers: str) -> None:
        self.status, self.headers = status, {k.replace("_", "-"): v for k, v in headers.items()}

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def channel(receiver: Receiver) -> Iterator[WebhookChannel]:
    with requests.Session() as session:
        yield WebhookChannel(receiver.url, SECRET, timeout=2.0, session=session)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- delivered ---------------------------------------------------------------------------

def test_posts_exactly_the_contract_fields(receiver: Receiver, channel: WebhookChannel) -> None:
    before = int(time.time())
    channel.send(make_message())
    after = int(time.time())

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/hooks/careplan"
    body = json.loads(request["body"])
    assert set(body) == CONTRACT
    sent_at = body.pop("sent_at")
    assert body == {
        "delivery_id": "d-0001", "prompt_id": "p-0001", "plan_id": "8a1c9a0e-4b7e-4a55-9d7c-3f1f0e6f2b11",
        "recipient": "coord-17", "reason": "no_show_follow_up", "due_at": "2026-03-02T22:59:59+00:00",
        "link": "https://careplan.example/v1/prompts/p-0001", "escalated": False,
    }
    sent = datetime.fromisoformat(sent_at)
    assert sent.utcoffset() == timedelta(0)
    assert before <= sent.timestamp() <= after
    assert int(request["headers"]["X-Careplan-Timestamp"]) == int(sent.timestamp())


def test_body_is_compact_sorted_utf8_json(receiver: Receiver, channel: WebhookChannel) -> None:
    channel.send(make_message(recipient="koordinator-Ærlig-ø", escalated=True))
    raw = receiver.requests[0]["body"]
    parsed = json.loads(raw.decode("utf-8"))
    assert raw == json.dumps(parsed, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    assert "koordinator-Ærlig-ø".encode() in raw
    assert parsed["escalated"] is True


def test_due_at_is_iso_8601_in_utc_whatever_the_offset(receiver: Receiver, channel: WebhookChannel) -> None:
    oslo = timezone(timedelta(hours=1))
    channel.send(make_message(due_at=datetime(2026, 3, 2, 23, 59, 59, tzinfo=oslo)))
    body = json.loads(receiver.requests[0]["body"])
    assert body["due_at"] == "2026-03-02T22:59:59+00:00"
    assert datetime.fromisoformat(body["due_at"]) == DUE


def test_headers_and_signature(receiver: Receiver, channel: WebhookChannel) -> None:
    channel.send(make_message())
    request = receiver.requests[0]
    headers, body = request["headers"], request["body"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "d-0001"
    timestamp = headers["X-Careplan-Timestamp"]
    assert timestamp.isdigit() and abs(int(timestamp) - time.time()) < 5
    signature = headers["X-Careplan-Signature"]
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature(SECRET, timestamp, body, signature)
    assert signature == sign(SECRET, timestamp, body)


def test_a_retry_of_the_same_delivery_carries_the_same_idempotency_key(receiver: Receiver,
                                                                       channel: WebhookChannel) -> None:
    receiver.answer(503)
    with pytest.raises(DeliveryError):
        channel.send(make_message())
    receiver.answer(200)
    channel.send(make_message())
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.requests]
    assert keys == ["d-0001", "d-0001"]
    first, second = (json.loads(r["body"]) for r in receiver.requests)
    assert first["delivery_id"] == second["delivery_id"] == "d-0001"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_delivered(receiver: Receiver, channel: WebhookChannel, status: int) -> None:
    receiver.answer(status)
    channel.send(make_message())
    assert len(receiver.requests) == 1


def test_a_channel_without_a_session_makes_its_own() -> None:
    with Receiver() as receiver:
        channel = WebhookChannel(receiver.url, SECRET, timeout=2.0)
        try:
            channel.send(make_message())
        finally:
            channel.close()
    assert len(receiver.requests) == 1


# -- the signature, as a receiver checks it ----------------------------------------------

def _signed(receiver: Receiver, channel: WebhookChannel) -> tuple[str, bytes, str]:
    channel.send(make_message())
    request = receiver.requests[0]
    return request["headers"]["X-Careplan-Timestamp"], request["body"], request["headers"]["X-Careplan-Signature"]


def test_signature_fails_with_a_wrong_secret(receiver: Receiver, channel: WebhookChannel) -> None:
    timestamp, body, signature = _signed(receiver, channel)
    assert verify_signature(SECRET, timestamp, body, signature)
    assert not verify_signature(b"another-secret", timestamp, body, signature)
    assert not verify_signature(b"", timestamp, body, signature)


def test_signature_fails_with_a_tampered_body(receiver: Receiver, channel: WebhookChannel) -> None:
    timestamp, body, signature = _signed(receiver, channel)
    tampered = body.replace(b"https://careplan.example", b"https://evil.example")
    assert tampered != body
    assert not verify_signature(SECRET, timestamp, tampered, signature)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature)
    assert not verify_signature(SECRET, timestamp, body[:-1], signature)


def test_signature_fails_for_an_old_or_future_or_swapped_timestamp(receiver: Receiver,
                                                                   channel: WebhookChannel) -> None:
    timestamp, body, signature = _signed(receiver, channel)
    t = int(timestamp)
    assert verify_signature(SECRET, timestamp, body, signature, now=t + 300)
    assert not verify_signature(SECRET, timestamp, body, signature, now=t + 301)  # a replay
    assert not verify_signature(SECRET, timestamp, body, signature, now=t - 301)  # from the future
    assert not verify_signature(SECRET, timestamp, body, signature, tolerance_s=10, now=t + 11)
    # a replay under a fresh timestamp: the signature covers the timestamp
    assert not verify_signature(SECRET, str(t + 1), body, signature, now=t + 1)


@pytest.mark.parametrize("header", ["", "sha256=", "sha1=abc", "garbage", "sha256=" + "0" * 64, "sha256=ø"])
def test_signature_fails_for_malformed_headers(header: str) -> None:
    timestamp, body = str(int(time.time())), b"{}"
    assert not verify_signature(SECRET, timestamp, body, header)


@pytest.mark.parametrize("timestamp", ["", "abc", "-5", " 1", "1.5", "١٢٣"])
def test_signature_fails_for_malformed_timestamps(timestamp: str) -> None:
    body = b"{}"
    assert not verify_signature(SECRET, timestamp, body, sign(SECRET, timestamp, body), now=1)


# -- refused and failed --------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
def test_server_errors_and_throttling_are_retryable(receiver: Receiver, channel: WebhookChannel,
                                                    status: int) -> None:
    receiver.answer(status)
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is True
    assert caught.value.retry_after is None
    assert str(status) in str(caught.value)
    assert len(receiver.requests) == 1  # one attempt: retrying is the caller's job


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
def test_other_client_errors_are_not_retryable(receiver: Receiver, channel: WebhookChannel, status: int) -> None:
    receiver.answer(status, Retry_After="30")
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is False
    assert caught.value.retry_after is None


def test_429_retry_after_seconds_are_honoured(receiver: Receiver, channel: WebhookChannel) -> None:
    receiver.answer(429, Retry_After="7")
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is True
    assert caught.value.retry_after == 7.0


def test_503_retry_after_as_an_http_date(receiver: Receiver, channel: WebhookChannel) -> None:
    receiver.answer(503, Retry_After=format_datetime(datetime.now(timezone.utc) + timedelta(seconds=120), usegmt=True))
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is True
    assert caught.value.retry_after is not None and 110 <= caught.value.retry_after <= 121


@pytest.mark.parametrize("value", ["soon", "", "-3"])
def test_unreadable_or_negative_retry_after(receiver: Receiver, channel: WebhookChannel, value: str) -> None:
    receiver.answer(429, Retry_After=value)
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is True
    assert caught.value.retry_after in (None, 0.0)


def test_redirects_are_not_followed(receiver: Receiver, channel: WebhookChannel) -> None:
    receiver.answer(307, Location="http://127.0.0.1:9/elsewhere")
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is False
    assert len(receiver.requests) == 1


def test_a_slow_receiver_times_out_retryably(receiver: Receiver) -> None:
    receiver.slow = True
    channel = WebhookChannel(receiver.url, SECRET, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    channel.close()
    assert time.monotonic() - started < 2
    assert caught.value.retryable is True
    assert "timed out" in str(caught.value)


def test_connection_refused_is_retryable() -> None:
    channel = WebhookChannel(f"http://127.0.0.1:{closed_port()}/hook", SECRET, timeout=1.0)
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    channel.close()
    assert caught.value.retryable is True


def test_an_invalid_url_is_not_retryable() -> None:
    with pytest.raises(DeliveryError) as caught:
        WebhookChannel("not a url", SECRET).send(make_message())
    assert caught.value.retryable is False


def test_a_naive_due_date_is_refused_before_sending(receiver: Receiver, channel: WebhookChannel) -> None:
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message(due_at=datetime(2026, 3, 2, 12, 0)))
    assert caught.value.retryable is False
    assert receiver.requests == []


def test_errors_and_logs_carry_no_url_secret_or_body(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """The error text is stored with the delivery and the URL may carry a token."""
    caplog.set_level(logging.DEBUG)
    url = receiver.url + "?token=url-token-s3cr3t"
    channel = WebhookChannel(url, SECRET, timeout=2.0)
    message = make_message()
    for status in (200, 500, 400):
        receiver.answer(status)
        try:
            channel.send(message)
        except DeliveryError as e:
            assert "s3cr3t" not in str(e) and "must never be read" not in str(e)
            assert message.link not in str(e)
    refused = WebhookChannel(f"http://127.0.0.1:{closed_port()}/?token=url-token-s3cr3t", SECRET, timeout=1.0)
    with pytest.raises(DeliveryError) as caught:
        refused.send(message)
    assert "s3cr3t" not in str(caught.value)
    assert "s3cr3t" not in repr(channel) and SECRET.decode() not in repr(channel)
    channel.close()
    refused.close()
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                      if r.name.startswith("careplan"))
    for forbidden in ("s3cr3t", SECRET.decode(), message.link, message.recipient, message.plan_id,
                      "must never be read"):
        assert forbidden not in logged


# -- back-off --------------------------------------------------------------------------------

def test_backoff_grows_exponentially_from_base() -> None:
    assert [backoff(n, jitter=0) for n in range(1, 7)] == [2, 4, 8, 16, 32, 64]
    assert [backoff(n, base=1.5, jitter=0) for n in (1, 2, 3)] == [1.5, 3, 6]


def test_backoff_caps() -> None:
    assert backoff(12, jitter=0) == 3600
    assert backoff(13, jitter=0) == 3600
    assert backoff(10_000, jitter=0) == 3600  # no overflow
    assert backoff(5, cap=10, jitter=0) == 10
    rng = random.Random(7)
    assert all(backoff(n, rng=rng) <= 3600 for n in range(1, 200))


def test_backoff_jitter_stays_within_the_fraction() -> None:
    rng = random.Random(42)
    samples = [backoff(1, rng=rng) for _ in range(500)]
    assert all(1.8 <= s <= 2.2 for s in samples)
    assert len({round(s, 6) for s in samples}) > 100  # it does spread
    samples = [backoff(4, jitter=0.25, rng=rng) for _ in range(200)]
    assert all(12 <= s <= 20 for s in samples)
    capped = [backoff(50, rng=rng) for _ in range(200)]
    assert all(3240 <= s <= 3600 for s in capped)


def test_backoff_before_the_first_attempt_is_base() -> None:
    assert backoff(0, jitter=0) == 2
    assert backoff(-3, jitter=0) == 2


# -- e-mail without a server: what a mail says, and which failures are worth a retry ---------

def smtp_channel(address: str | None = "coord-17@kommune.example") -> SmtpChannel:
    return SmtpChannel("127.0.0.1", closed_port(), "careplan@kommune.example", lambda _: address)


@pytest.mark.parametrize("reason", sorted(REASON_PHRASES))
def test_every_reason_code_has_a_phrase_in_the_subject(reason: str) -> None:
    mail = smtp_channel().render(make_message(reason=reason), "coord-17@kommune.example")
    assert mail["Subject"] == f"[careplan] Action needed: {REASON_PHRASES[reason]}"
    assert REASON_PHRASES[reason] in mail.get_content()
    assert reason not in mail.as_string()  # the phrase, not the code


def test_no_show_phrase_and_unknown_codes() -> None:
    assert human_reason("no_show_follow_up") == "follow up a missed triangle meeting"
    assert human_reason("something_new") == "a prompt"
    mail = smtp_channel().render(make_message(reason="Kari Nordmann: ring mor kl 9"), "a@b.example")
    assert mail["Subject"] == "[careplan] Action needed: a prompt"
    assert "Nordmann" not in mail.as_string()


def test_escalated_mail_says_reminder() -> None:
    mail = smtp_channel().render(make_message(escalated=True), "a@b.example")
    assert mail["Subject"].startswith("[careplan] Reminder (escalated)")
    assert mail.get_content().startswith("Reminder (escalated)")


def test_message_id_is_derived_from_the_delivery() -> None:
    channel = smtp_channel()
    first = channel.render(make_message(), "a@b.example")
    again = channel.render(make_message(), "a@b.example")
    other = channel.render(make_message(delivery_id="d-0002"), "a@b.example")
    assert first["Message-ID"] == again["Message-ID"] == "<careplan.d-0001@kommune.example>"
    assert other["Message-ID"] != first["Message-ID"]
    assert first["X-Careplan-Delivery-Id"] == "d-0001"


def test_no_address_is_not_retryable() -> None:
    with pytest.raises(DeliveryError, match="no address") as caught:
        smtp_channel(address=None).send(make_message())
    assert caught.value.retryable is False
    with pytest.raises(DeliveryError) as caught:
        smtp_channel().send(make_message(recipient=""))
    assert caught.value.retryable is False


def test_a_failed_address_lookup_is_retryable() -> None:
    def lookup(_: str) -> str:
        raise ConnectionError("directory down")

    channel = SmtpChannel("127.0.0.1", closed_port(), "careplan@kommune.example", lookup)
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is True


def test_a_header_injection_in_the_address_is_refused() -> None:
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(address="a@b.example\r\nBcc: everyone@b.example").send(make_message())
    assert caught.value.retryable is False


@pytest.mark.parametrize("error, retryable", [
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
    (smtplib.SMTPConnectError(421, b"busy"), True),
    (smtplib.SMTPConnectError(554, b"go away"), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    (TimeoutError("timed out"), True),
    (socket.gaierror(-2, "Name or service not known"), True),
    (smtplib.SMTPRecipientsRefused({"a@b.example": (550, b"no such user")}), False),
    (smtplib.SMTPRecipientsRefused({"a@b.example": (450, b"mailbox busy")}), True),
    (smtplib.SMTPDataError(554, b"rejected"), False),
    (smtplib.SMTPDataError(451, b"try later"), True),
    (smtplib.SMTPSenderRefused(553, b"sender refused", "careplan@kommune.example"), False),
    (smtplib.SMTPSenderRefused(421, b"closing", "careplan@kommune.example"), True),
    (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
    (smtplib.SMTPAuthenticationError(454, b"temporary auth failure"), True),
    (smtplib.SMTPHeloError(501, b"bad helo"), False),
    (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), False),
])
def test_smtp_errors_are_classified(error: BaseException, retryable: bool) -> None:
    classified = _smtp_error(error)
    assert classified is not None
    assert classified.retryable is retryable
    assert "a@b.example" not in str(classified)  # server replies may echo the address
    assert "no such user" not in str(classified)


def test_other_exceptions_are_not_classified() -> None:
    assert _smtp_error(KeyError("bug")) is None
