"""Bearer tokens: who is calling and in which role.

Embedded default: HS256 tokens (joserfc) signed with a random key kept in a file under the data
folder (created on first run, mode 0600). Both services read the same file, so one token works
for both. Production verifies OIDC issuers' tokens through their JWKS (``careplan_shared.oidc``,
behind the same ``verify`` call).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwk, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyCurveError,
    JoseError,
    KeyParameterError,
    MissingClaimError,
    UnsupportedAlgorithmError,
    UnsupportedKeyAlgorithmError,
)

from careplan_shared.files import load_or_create_secret

ROLES = ("integration", "clinician", "coordinator", "patient", "relative")
WRITER_ROLES = frozenset({"integration", "clinician", "coordinator"})
DEV_ISSUER = "careplan-dev"
DEV_AUDIENCE = "careplan"
DEV_ALGORITHM = "HS256"
DEV_LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or signed by someone else (-> 401)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    on_behalf_of: str | None = None

    @property
    def actor(self) -> dict[str, str]:
        """Who recorded a change: a clinician via the EPR integration, or the caller itself."""
        if self.role == "integration" and self.on_behalf_of:
            return {"role": "clinician", "id": self.on_behalf_of, "via": self.subject}
        return {"role": self.role, "id": self.subject}


def load_or_create_dev_key(path: Path) -> bytes:
    """The embedded-default signing key (0600); created atomically so racing processes agree."""
    return bytes.fromhex(load_or_create_secret(path, lambda: secrets.token_hex(32)))


def mint_token(
    key: bytes,
    subject: str,
    role: str,
    *,
    ttl_seconds: int = 8 * 3600,
    on_behalf_of: str | None = None,
    issuer: str = DEV_ISSUER,
    audience: str = DEV_AUDIENCE,
) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject, "role": role, "iss": issuer, "aud": audience,
        "iat": now, "nbf": now, "exp": now + ttl_seconds,
    }
    if on_behalf_of:
        claims["on_behalf_of"] = on_behalf_of
    return jwt.encode({"alg": DEV_ALGORITHM}, claims, jwk.OctKey.import_key(key), algorithms=[DEV_ALGORITHM])


class DevTokenVerifier:
    def __init__(self, key: bytes, issuer: str = DEV_ISSUER, audience: str = DEV_AUDIENCE):
        self._key = jwk.OctKey.import_key(key)
        self._claims = jwt.JWTClaimsRegistry(
            leeway=DEV_LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        )

    def verify(self, token: str) -> Principal:
        if not isinstance(token, str):
            raise InvalidToken("malformed token")
        claims: dict[str, Any] = {}
        try:
            claims = jwt.decode(token, self._key, algorithms=[DEV_ALGORITHM]).claims  # the signature only ...
            self._claims.validate(claims)  # ... then the claims
        except JoseError as e:
            raise InvalidToken(token_error_reason(e, claims)) from None
        except (TypeError, ValueError):  # e.g. not ASCII
            raise InvalidToken("malformed token") from None
        return principal_from_claims(claims)


def token_error_reason(error: JoseError, claims: dict[str, Any] | None = None) -> str:
    """A short reason for a 401 from a joserfc error, naming no part of the token (only,
    at most, the name of a registered claim). ``claims``: the verified claims, if it got that far."""
    if isinstance(error, ExpiredTokenError):
        return "token expired"
    if isinstance(error, MissingClaimError):
        return f"token lacks the {error.claim.replace(',', ', ')} claim"
    if isinstance(error, ClaimError):
        if error.claim in ("nbf", "iat") and _is_number((claims or {}).get(error.claim)):
            return "token not yet valid"  # (or issued in the future): may pass later
        return {"iss": "wrong issuer", "aud": "wrong audience"}.get(error.claim, f"invalid {error.claim} claim")
    for kind, reason in (
        (BadSignatureError, "bad signature"),
        (UnsupportedAlgorithmError, "algorithm not allowed"),
        (UnsupportedKeyAlgorithmError, "algorithm does not match the signing key"),
        ((KeyParameterError, InvalidKeyCurveError), "signing key does not fit the algorithm"),
    ):
        if isinstance(error, kind):
            return reason
    return "malformed token"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# An id in a token is one line of printable text: no control characters, no lone surrogates
# (it is logged, stored in the access log, compared with ids in plans).
_NOT_AN_ID = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128 and not _NOT_AN_ID.search(value)


def principal_from_claims(claims: dict[str, Any], role_claim: str = "role", subject_claim: str = "sub") -> Principal:
    subject, role = claims.get(subject_claim), claims.get(role_claim)
    if not _is_id(subject):
        raise InvalidToken("subject claim missing or invalid")
    assert isinstance(subject, str)
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidToken("role claim missing or unknown")
    # Only the EPR's system account acts on behalf of a named clinician; the claim means
    # nothing on anyone else's token (a patient's token must not pass as a clinician's).
    obo = claims.get("on_behalf_of") if role == "integration" else None
    if obo is not None and not _is_id(obo):
        raise InvalidToken("on_behalf_of claim invalid")
    return Principal(subject, role, obo)


def bearer_token(authorization_header: str | None) -> str:
    if not authorization_header:
        raise InvalidToken("no Authorization header")
    scheme, _, token = authorization_header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Authorization is not a Bearer token")
    return token.strip()
