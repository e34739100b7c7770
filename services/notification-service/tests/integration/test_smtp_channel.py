"""The e-mail channel against a real SMTP server (aiosmtpd, in a thread on 127.0.0.1): what
arrives, and which refusals are worth a retry. Needs aiosmtpd (pinned in requirements.lock)."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from notification_service.adapters.channels import DeliveryError, Message, SmtpChannel

pytestmark = pytest.mark.integration

SENDER = "careplan@kommune.example"
ADDRESSES = {"coord-17": "kari.koordinator@kommune.example"}
DUE = datetime(2026, 3, 2, 22, 59, tzinfo=timezone.utc)  # 23:59 in Oslo (CET)
LINK = "https://careplan.example/v1/prompts/4f0c2d7e-prompt"


def make_message(**changes: Any) -> Message:
    fields: dict[str, Any] = dict(
        delivery_id="3c5e9a52-delivery", prompt_id="4f0c2d7e-prompt", plan_id="9b1d4e11-plan",
        recipient="coord-17", reason="no_show_follow_up", due_at=DUE, link=LINK)
    fields.update(changes)
    return Message(**fields)


class Collector:
    """An aiosmtpd handler: collects accepted mail; or answers RCPT/DATA as told."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def mail(self, index: int = -1) -> EmailMessage:
        return email.message_from_bytes(self.envelopes[index].content, policy=email.policy.default)


class EphemeralController(Controller):
    """Binds port 0 and learns the port the OS chose before the readiness check connects."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., tuple[EphemeralController, Collector]]]:
    started: list[EphemeralController] = []

    def start(**smtp_parameters: Any) -> tuple[EphemeralController, Collector]:
        collector = Collector()
        controller = EphemeralController(collector, hostname="127.0.0.1", port=0, ready_timeout=5,
                                         **smtp_parameters)
        controller.start()
        started.append(controller)
        return controller, collector

    yield start
    for controller in started:
        if controller._thread is not None:
            controller.stop()


@pytest.fixture
def smtp(start_smtp: Callable[..., tuple[EphemeralController, Collector]]) -> tuple[EphemeralController, Collector]:
    return start_smtp()


def channel_for(controller: EphemeralController, **kwargs: Any) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", controller.port, SENDER, ADDRESSES.get, timeout=2.0, **kwargs)


# -- delivered ---------------------------------------------------------------------------

def test_delivers_a_mail_with_the_reason_the_due_date_and_the_link(smtp: tuple[EphemeralController, Collector]) -> None:
    controller, collector = smtp
    channel_for(controller).send(make_message())

    assert len(collector.envelopes) == 1
    envelope = collector.envelopes[0]
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == ["kari.koordinator@kommune.example"]
    mail = collector.mail()
    assert mail["To"] == "kari.koordinator@kommune.example"
    assert mail["From"] == SENDER
    assert mail["Subject"] == "[careplan] Action needed: follow up a missed triangle meeting"
    assert mail["Message-ID"] == "<careplan.3c5e9a52-delivery@kommune.example>"
    assert mail["X-Careplan-Delivery-Id"] == "3c5e9a52-delivery"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] is not None
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content().replace("\r\n", "\n")  # as it came over the wire
    assert "follow up a missed triangle meeting" in body
    assert "Due: 2026-03-02 23:59 (Europe/Oslo)" in body
    assert f"Open the prompt: {LINK}\n" in body
    assert "only after you log in" in body
    assert "Reminder (escalated)" not in body


def test_a_retried_delivery_is_recognisably_the_same_mail(smtp: tuple[EphemeralController, Collector]) -> None:
    controller, collector = smtp
    channel = channel_for(controller)
    channel.send(make_message())
    channel.send(make_message())
    channel.send(make_message(delivery_id="another-delivery", escalated=True))
    ids = [collector.mail(i)["Message-ID"] for i in range(3)]
    assert ids[0] == ids[1] != ids[2]
    assert [collector.mail(i)["X-Careplan-Delivery-Id"] for i in range(3)] == [
        "3c5e9a52-delivery", "3c5e9a52-delivery", "another-delivery"]


def test_an_escalated_mail_says_reminder(smtp: tuple[EphemeralController, Collector]) -> None:
    controller, collector = smtp
    channel_for(controller).send(make_message(reason="evaluation_due", escalated=True))
    mail = collector.mail()
    assert mail["Subject"] == "[careplan] Reminder (escalated) - Action needed: hold the scheduled plan evaluation"
    assert mail.get_content().startswith("Reminder (escalated)")


def test_the_mail_holds_nothing_but_the_reason_the_due_date_and_the_link(
        smtp: tuple[EphemeralController, Collector]) -> None:
    """Plan content cannot reach a mail: the only inputs are the reason category and the link
    (and the due date); ids, the coordinator's id and unknown reason text are not echoed."""
    controller, collector = smtp
    channel = channel_for(controller)
    channel.send(make_message())
    expected = (
        "Action needed: follow up a missed triangle meeting.\n"
        "Due: 2026-03-02 23:59 (Europe/Oslo)\n"
        "\n"
        f"Open the prompt: {LINK}\n"
        "\n"
        "For privacy this e-mail contains no details from the care plan;\n"
        "they are shown only after you log in.\n"
        "\n"
        "-- \n"
        "Sent automatically by the care plan notification service. Please do not reply.\n"
    )
    assert collector.mail().get_content().replace("\r\n", "\n") == expected
    raw = collector.envelopes[-1].content.decode("utf-8")
    for absent in ("9b1d4e11-plan", "coord-17", "no_show_follow_up"):
        assert absent not in raw
    assert raw.count("4f0c2d7e-prompt") == 1  # only inside the link

    # a reason that is not a known category is not echoed: a mail says "a prompt"
    channel.send(make_message(reason="Ola Nordmann (16): strategy - call his mother at 9, taxi"))
    raw = collector.envelopes[-1].content.decode("utf-8")
    assert "[careplan] Action needed: a prompt" in raw
    for absent in ("Ola", "Nordmann", "mother", "taxi", "strategy"):
        assert absent not in raw


def test_login_with_credentials(start_smtp: Callable[..., tuple[EphemeralController, Collector]]) -> None:
    seen: list[LoginPassword] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        seen.append(auth_data)
        # handled=False: the server answers (235, or 535 for wrong credentials)
        return AuthResult(success=auth_data == LoginPassword(b"careplan", b"right-password"), handled=False)

    controller, collector = start_smtp(authenticator=authenticator, auth_require_tls=False)
    channel_for(controller, username="careplan", password="right-password").send(make_message())
    assert len(collector.envelopes) == 1
    assert seen and seen[0].login == b"careplan"

    with pytest.raises(DeliveryError) as caught:
        channel_for(controller, username="careplan", password="wrong").send(make_message())
    assert caught.value.retryable is False  # 535: retrying the same password will not help
    assert "wrong" not in str(caught.value)
    assert len(collector.envelopes) == 1


def test_starttls_required_but_not_offered_is_not_retryable(smtp: tuple[EphemeralController, Collector]) -> None:
    controller, collector = smtp
    with pytest.raises(DeliveryError) as caught:
        channel_for(controller, starttls=True).send(make_message())
    assert caught.value.retryable is False
    assert collector.envelopes == []


# -- refused -------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, reply, retryable", [
    ("rcpt", "550 no such user", False),
    ("rcpt", "553 mailbox name not allowed", False),
    ("rcpt", "450 mailbox busy", True),
    ("rcpt", "451 try later", True),
    ("data", "554 rejected as spam", False),
    ("data", "451 try later", True),
    ("data", "452 insufficient storage", True),
])
def test_refusals(smtp: tuple[EphemeralController, Collector], stage: str, reply: str, retryable: bool) -> None:
    controller, collector = smtp
    setattr(collector, f"{stage}_reply", reply)
    with pytest.raises(DeliveryError) as caught:
        channel_for(controller).send(make_message())
    assert caught.value.retryable is retryable
    assert reply.split()[0] in str(caught.value)
    assert "kari.koordinator" not in str(caught.value)
    assert collector.envelopes == []


def test_server_stopped_is_retryable(start_smtp: Callable[..., tuple[EphemeralController, Collector]]) -> None:
    controller, collector = start_smtp()
    channel = channel_for(controller)
    channel.send(make_message())
    controller.stop()
    with pytest.raises(DeliveryError) as caught:
        channel.send(make_message())
    assert caught.value.retryable is True
    assert len(collector.envelopes) == 1


def test_no_address_is_not_retryable(smtp: tuple[EphemeralController, Collector]) -> None:
    controller, collector = smtp
    with pytest.raises(DeliveryError, match="no address") as caught:
        channel_for(controller).send(make_message(recipient="coord-unknown"))
    assert caught.value.retryable is False
    assert collector.envelopes == []


# -- servers that misbehave (a raw socket, no SMTP library) ------------------------------------

class RawServer:
    """Accepts connections and greets them with ``greeting`` (or hangs up, or says nothing)."""

    def __init__(self, greeting: bytes | None, hang_up: bool) -> None:
        self.greeting, self.hang_up = greeting, hang_up
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(conn)
            if self.greeting:
                conn.sendall(self.greeting)
            if self.hang_up:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("greeting, hang_up", [
    (None, True),  # accepts, then hangs up: SMTPServerDisconnected
    (b"421 too busy, try later\r\n", True),  # SMTPConnectError
    (b"554 no service for you\r\n", True),  # SMTPConnectError, still a connection problem
    (None, False),  # accepts and says nothing: a time-out
])
def test_connection_problems_are_retryable(greeting: bytes | None, hang_up: bool) -> None:
    server = RawServer(greeting, hang_up)
    try:
        channel = SmtpChannel("127.0.0.1", server.port, SENDER, ADDRESSES.get, timeout=0.3)
        with pytest.raises(DeliveryError) as caught:
            channel.send(make_message())
    finally:
        server.close()
    assert caught.value.retryable is True
