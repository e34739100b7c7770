"""The delivery channels: a signed webhook and e-mail over SMTP.

Privacy: a message carries only a link to the prompt and the reason category, never plan
content (no free text, no names, no strategies); the coordinator logs in to see the details.
Nothing here logs a message body, an address, a URL or a secret, and the text of a
``DeliveryError`` (stored with the delivery) keeps to status codes and error types.

A ``send`` makes one attempt. Retrying with back-off (``backoff``) is the caller's job; a
``DeliveryError`` says whether a retry can help and, when the receiver asked for it, how long
to wait first (``retry_after``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests

from notification_service.domain.deliveries import DeliveryError, Message, backoff
from notification_service.domain.prompts import Reason

# Message, DeliveryError and backoff live in the domain (the dispatcher uses them too); named
# here as well, for the channels' callers.
__all__ = ["DeliveryError", "Message", "SmtpChannel", "WebhookChannel", "backoff", "human_reason", "sign",
           "verify_signature"]

log = logging.getLogger("careplan.channels")

MAX_RETRY_AFTER = 86400.0  # a receiver asking for more than a day is capped at a day


def _iso_utc(moment: datetime, what: str) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DeliveryError(f"{what} is not timezone-aware", retryable=False)
    return moment.astimezone(timezone.utc).isoformat()


# -- webhook -----------------------------------------------------------------------------

SIGNATURE_PREFIX = "sha256="


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Careplan-Signature value: HMAC-SHA256 over b"<timestamp>." + body."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature_header: str,
                     tolerance_s: int = 300, now: float | None = None) -> bool:
    """For receivers (and tests): the signature matches the timestamp and body, and the
    timestamp is within ``tolerance_s`` of ``now`` (replays of old requests are refused)."""
    if not isinstance(timestamp, str) or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if not isinstance(signature_header, str) or not signature_header.isascii():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode("ascii"), signature_header.strip().lower().encode("ascii"))


def _retry_after(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


RETRYABLE_STATUS = frozenset({408, 425, 429})


class WebhookChannel:
    """POSTs the message as signed JSON. The receiver deduplicates on Idempotency-Key (a retry
    of the same delivery carries the same key) and should reject stale timestamps."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes, timeout: float = 5.0, session: requests.Session | None = None):
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._own_session = session is None
        self._session = session or requests.Session()

    def __repr__(self) -> str:  # never the URL (it may carry a token) nor the secret
        return f"WebhookChannel(timeout={self.timeout})"

    @staticmethod
    def payload(message: Message, sent_at: datetime) -> dict[str, Any]:
        return {
            "delivery_id": message.delivery_id,
            "prompt_id": message.prompt_id,
            "plan_id": message.plan_id,
            "recipient": message.recipient,
            "reason": message.reason,
            "due_at": _iso_utc(message.due_at, "due_at"),
            "link": message.link,
            "escalated": bool(message.escalated),
            "sent_at": sent_at.isoformat(),
        }

    def send(self, message: Message) -> None:
        timestamp = int(time.time())
        sent_at = datetime.fromtimestamp(timestamp, timezone.utc)
        body = json.dumps(self.payload(message, sent_at), separators=(",", ":"), sort_keys=True,
                          ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.delivery_id,
            "X-Careplan-Timestamp": str(timestamp),
            "X-Careplan-Signature": sign(self._secret, str(timestamp), body),
            "User-Agent": "careplan-notification-service",
        }
        try:
            # No redirects: a POST redirected elsewhere would lose its body or its receiver.
            response = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout,
                                          allow_redirects=False, stream=True)
        except requests.Timeout as e:
            raise DeliveryError(f"webhook timed out ({type(e).__name__})", retryable=True) from None
        except requests.ConnectionError as e:
            raise DeliveryError(f"webhook unreachable ({type(e).__name__})", retryable=True) from None
        except requests.RequestException as e:  # an invalid URL and the like: configuration
            raise DeliveryError(f"webhook request failed ({type(e).__name__})", retryable=False) from None
        try:
            status = response.status_code
            retry_after = _retry_after(response.headers.get("Retry-After"))
        finally:
            response.close()  # the body is never read: it is not ours to log
        if 200 <= status < 300:
            log.debug("webhook delivered", extra={"status": status})
            return
        retryable = status in RETRYABLE_STATUS or status >= 500
        log.debug("webhook refused", extra={"status": status})
        raise DeliveryError(f"webhook answered {status}", retryable=retryable,
                            retry_after=retry_after if retryable else None)

    def close(self) -> None:
        if self._own_session:
            self._session.close()


# -- e-mail ------------------------------------------------------------------------------

REASON_PHRASES: dict[str, str] = {
    Reason.EVALUATION_DUE: "hold the scheduled plan evaluation",
    Reason.EVALUATION_SUGGESTED: "schedule an evaluation of the plan",
    Reason.TRIANGLE_MEETING_SUGGESTED: "consider a triangle meeting",
    Reason.NO_SHOW_FOLLOW_UP: "follow up a missed triangle meeting",
    Reason.WRITTEN_INFORMATION_DUE: "give the information in writing as well",
    Reason.CONSENT_EXPIRING: "review a consent that is about to expire",
}
UNKNOWN_REASON = "a prompt"


def human_reason(reason: str) -> str:
    """A short English phrase for a reason code; anything unknown is just "a prompt" (the code
    itself is never echoed, so nothing but the known categories can reach a mail)."""
    return REASON_PHRASES.get(reason, UNKNOWN_REASON)


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SmtpChannel:
    """One e-mail per delivery, plain text: the reason, the due date and the link."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, address_for: Callable[[str], str | None],
                 username: str | None = None, password: str | None = None, starttls: bool = False,
                 timeout: float = 10.0, tz: str = "Europe/Oslo"):
        self.host, self.port, self.sender = host, port, sender
        self.address_for = address_for
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout
        self.tz = ZoneInfo(tz)  # due dates are shown in the coordinators' time zone

    def __repr__(self) -> str:  # never the password
        return f"SmtpChannel(host={self.host!r}, port={self.port}, starttls={self.starttls})"

    def message_id(self, delivery_id: str) -> str:
        """The same for every attempt of a delivery, so a retried mail is recognisably the same."""
        domain = self.sender.rpartition("@")[2].strip().strip(">") or "careplan.invalid"
        domain = _ID_UNSAFE.sub("", domain) or "careplan.invalid"
        return f"<careplan.{_ID_UNSAFE.sub('_', delivery_id)}@{domain}>"

    def render(self, message: Message, address: str) -> EmailMessage:
        if message.due_at.tzinfo is None or message.due_at.utcoffset() is None:
            raise DeliveryError("due_at is not timezone-aware", retryable=False)
        reason = human_reason(message.reason)
        due = message.due_at.astimezone(self.tz)
        lead = "Reminder (escalated): this is still open. " if message.escalated else ""
        subject = ("[careplan] Reminder (escalated) - Action needed: " if message.escalated
                   else "[careplan] Action needed: ") + reason
        body = (
            f"{lead}Action needed: {reason}.\n"
            f"Due: {due:%Y-%m-%d %H:%M} ({self.tz.key})\n"
            "\n"
            f"Open the prompt: {message.link}\n"
            "\n"
            "For privacy this e-mail contains no details from the care plan;\n"
            "they are shown only after you log in.\n"
            "\n"
            "-- \n"
            "Sent automatically by the care plan notification service. Please do not reply.\n"
        )
        mail = EmailMessage()
        mail["Subject"] = subject
        mail["From"] = self.sender
        mail["To"] = address
        mail["Date"] = format_datetime(datetime.now(timezone.utc))
        mail["Message-ID"] = self.message_id(message.delivery_id)
        mail["X-Careplan-Delivery-Id"] = message.delivery_id
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        mail.set_content(body)
        return mail

    def send(self, message: Message) -> None:
        if not message.recipient:
            raise DeliveryError("no recipient", retryable=False)
        try:
            address = self.address_for(message.recipient)
        except Exception as e:  # noqa: BLE001 - a directory lookup that failed may work later
            raise DeliveryError(f"address lookup failed ({type(e).__name__})", retryable=True) from None
        if not address:
            raise DeliveryError("no address", retryable=False)
        try:
            mail = self.render(message, address)
        except (ValueError, TypeError) as e:  # e.g. a line break in the address
            raise DeliveryError(f"invalid message header ({type(e).__name__})", retryable=False) from None
        self._deliver(mail, address)

    def _deliver(self, mail: EmailMessage, address: str) -> None:
        smtp: smtplib.SMTP | None = None
        talking = False  # the server still answers: say QUIT, rather than just hang up
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self._password or "")
            smtp.send_message(mail, from_addr=self.sender, to_addrs=[address])
            talking = True
        except Exception as e:  # noqa: BLE001 - classified below; anything else is a bug: re-raised
            talking = isinstance(e, (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException)) \
                and not isinstance(e, smtplib.SMTPConnectError)
            error = _smtp_error(e)
            if error is None:
                raise
            log.debug("email refused", extra={"error_type": type(e).__name__})
            raise error from None
        finally:
            if smtp is not None:
                if talking:
                    try:  # the mail was accepted (or refused) already: a failed QUIT changes nothing
                        smtp.quit()
                    except (smtplib.SMTPException, OSError) as e:
                        log.debug("SMTP QUIT failed after the mail was handled",
                                  extra={"error_type": type(e).__name__})
                smtp.close()
        log.debug("email delivered")


def _by_code(code: int | None, what: str, kind: str) -> DeliveryError:
    if isinstance(code, int) and 500 <= code < 600:
        return DeliveryError(f"{what} {code} ({kind})", retryable=False)
    return DeliveryError(f"{what} {code} ({kind})", retryable=True)  # 4xx, or no/odd code


def _smtp_error(e: BaseException) -> DeliveryError | None:
    """Temporary (connection, time-out, 4xx) -> retryable; a permanent 5xx refusal -> not.
    Only codes and error types go into the text: server replies may echo the address."""
    kind = type(e).__name__
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = [reply[0] for reply in e.recipients.values()]
        if codes and all(isinstance(c, int) and 500 <= c < 600 for c in codes):
            return DeliveryError(f"recipient refused {codes[0]} ({kind})", retryable=False)
        return DeliveryError(f"recipient refused {codes[0] if codes else '?'} ({kind})", retryable=True)
    if isinstance(e, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return DeliveryError(f"mail server connection failed ({kind})", retryable=True)
    if isinstance(e, smtplib.SMTPResponseException):  # sender/data/helo/auth refused, by code
        return _by_code(e.smtp_code, "mail server answered", kind)
    if isinstance(e, smtplib.SMTPNotSupportedError):  # e.g. no STARTTLS/AUTH: configuration
        return DeliveryError(f"mail server lacks a required extension ({kind})", retryable=False)
    if isinstance(e, smtplib.SMTPException):
        return DeliveryError(f"mail delivery failed ({kind})", retryable=True)
    if isinstance(e, OSError):  # refused, reset, time-out, DNS, TLS
        return DeliveryError(f"mail server unreachable ({kind})", retryable=True)
    return None
