"""Encryption at rest for notification-service's store (AES-GCM).

Plan views, prompt details and dead-lettered payloads hold plan content (meeting place,
transport, companion, no-show strategy, birth date, ids): they are stored as
``enc:v1:<base64(nonce | ciphertext | tag)>``, bound to their row (associated data), so a value
copied to another row does not decrypt. A value without the prefix is a row written before
encryption: still read as it is, and encrypted the next time it is written.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from careplan_shared.files import load_or_create_secret
from notification_service.domain.errors import StoreUnreadable

__all__ = ["Cipher", "StoreUnreadable", "decode_key", "load_or_create_key", "new_key", "seal", "unseal"]

PREFIX = "enc:v1:"
KEY_SIZES = (16, 24, 32)  # AES-128/192/256


def decode_key(value: str) -> bytes:
    """Standard base64 of 16, 24 or 32 bytes; ValueError otherwise (the message names no key)."""
    try:
        raw = binascii.a2b_base64(value.strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("must be standard base64") from None
    if len(raw) not in KEY_SIZES:
        raise ValueError(f"must decode to 16, 24 or 32 bytes (AES), got {len(raw)}")
    return raw


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def load_or_create_key(path: Path) -> bytes:
    """The embedded default's key: made on first run in a 0600 file (its folder 0700); racing
    processes agree on one key (careplan_shared.files)."""
    return decode_key(load_or_create_secret(path, new_key))


class Cipher:
    def __init__(self, key: bytes):
        if len(key) not in KEY_SIZES:
            raise ValueError("an AES key is 16, 24 or 32 bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Cipher(<key hidden>)"

    def encrypt(self, text: str, context: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), context.encode("utf-8"))
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, value: str, context: str) -> str:
        try:
            raw = base64.b64decode(value[len(PREFIX):], validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError):
            raise StoreUnreadable("a stored value does not decrypt with this key") from None


def seal(cipher: Cipher | None, text: str, context: str) -> str:
    return cipher.encrypt(text, context) if cipher is not None else text


def unseal(cipher: Cipher | None, value: str, context: str) -> str:
    if not value.startswith(PREFIX):
        return value  # written before encryption was turned on
    if cipher is None:
        raise StoreUnreadable("the store is encrypted and no key was given")
    return cipher.decrypt(value, context)
