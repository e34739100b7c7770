"""Settings of the pages (sessions, login, language), read from the environment.

Variables (both services read them; each keeps its own sessions and secret):

==================================  ===========================================================
``CAREPLAN_WEB_SECRET_KEY_FILE``    signs the session cookie and CSRF tokens; default
                                    ``$CAREPLAN_DATA_DIR/<service>/web-secret.key``, made on
                                    first start (0600). Every instance of a service shares it.
``CAREPLAN_WEB_SESSION_DIR``        server-side sessions; default ``.../<service>/sessions``
``CAREPLAN_WEB_SESSION_MINUTES``    idle minutes before a session ends (default 30)
``CAREPLAN_WEB_SECURE_COOKIES``     ``true``: cookies only over https (also set per request
                                    whenever the request came over https)
``OIDC_NAME_CLIENT_ID``             offers login through this issuer (see careplan_shared.oidc)
``OIDC_NAME_CLIENT_SECRET``         confidential client; unset: a public client (PKCE only)
``OIDC_NAME_DISCOVERY_URL``         default ``<issuer>/.well-known/openid-configuration``
``OIDC_NAME_LOGIN_ROLES``           roles a person chooses between at login (``patient,relative``
                                    for ID-porten); unset: the role comes from the ID token's
                                    role claim or ``OIDC_NAME_STATIC_ROLE``
``OIDC_NAME_SCOPE``                 default ``openid profile``
``OIDC_NAME_LABEL``                 the button's name, e.g. ``ID-porten``; default the name
==================================  ===========================================================

The development login (pick a synthetic user) exists only while dev tokens are accepted:
``OIDC_ISSUERS`` unset, or ``OIDC_ALLOW_DEV_TOKENS=true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from careplan_shared.auth import ROLES
from careplan_shared.config import ConfigError, env_flag, env_int
from careplan_shared.oidc import dev_tokens_accepted

# Roles a person may pick at login: each is bound to the person's own identity by the policy
# (their own plan, a plan whose patient consented to them, a plan they coordinate), so the
# choice shows them nothing more than who they are allows. Clinicians' and systems' roles
# must come from the issuer.
CHOOSABLE_ROLES = ("patient", "relative", "coordinator")
LOGIN_VARIABLES = (
    "CAREPLAN_WEB_SECRET_KEY_FILE", "CAREPLAN_WEB_SESSION_DIR", "CAREPLAN_WEB_SESSION_MINUTES",
    "CAREPLAN_WEB_SECURE_COOKIES",
    "OIDC_NAME_CLIENT_ID", "OIDC_NAME_CLIENT_SECRET", "OIDC_NAME_DISCOVERY_URL", "OIDC_NAME_LOGIN_ROLES",
    "OIDC_NAME_SCOPE", "OIDC_NAME_LABEL",
)


@dataclass(frozen=True)
class OidcLogin:
    """One issuer people log in through (authorization code flow with PKCE)."""

    name: str  # lower case, as in OIDC_ISSUERS: the callback is /login/<name>/callback
    label: str
    issuer: str
    client_id: str
    client_secret: str | None
    discovery_url: str
    scope: str
    roles: tuple[str, ...]  # chosen at login; empty: from role_claim or static_role
    role_claim: str
    subject_claim: str
    static_role: str | None


@dataclass(frozen=True)
class DevUser:
    subject: str
    role: str
    name: str  # a synthetic person's name, to tell them apart on the dev login


# The synthetic people the development login lists (the demo data and the tests use them).
DEV_PEOPLE = (
    DevUser("pat-a1", "patient", "Ada Testesen"),
    DevUser("pat-c2", "patient", "Cecilie Prøvesen (17)"),
    DevUser("rel-b1", "relative", "Bjørn Testesen"),
    DevUser("rel-d2", "relative", "Dina Prøvesen"),
    DevUser("k1", "coordinator", "Kari Koordinator"),
    DevUser("k2", "coordinator", "Kim Koordinator"),
)


@dataclass(frozen=True)
class PagesSettings:
    service: str
    secret_key_file: Path
    session_dir: Path
    session_minutes: int = 30
    secure_cookies: bool = False
    dev_login: bool = True
    logins: tuple[OidcLogin, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, service: str, data_dir: Path) -> PagesSettings:
        base = data_dir / service
        return cls(
            service=service,
            secret_key_file=Path(env.get("CAREPLAN_WEB_SECRET_KEY_FILE") or base / "web-secret.key"),
            session_dir=Path(env.get("CAREPLAN_WEB_SESSION_DIR") or base / "sessions"),
            session_minutes=env_int(env, "CAREPLAN_WEB_SESSION_MINUTES", 30, 1, 24 * 60),
            secure_cookies=env_flag(env, "CAREPLAN_WEB_SECURE_COOKIES"),
            dev_login=dev_tokens_accepted(env),
            logins=tuple(_logins(env)),
        )


def _logins(env: Mapping[str, str]):
    listed = (env.get("OIDC_ISSUERS") or "").strip()
    for raw in filter(None, (n.strip() for n in listed.split(","))):
        name = raw.upper()

        def get(suffix: str, default: str | None = None, name: str = name) -> str | None:
            return (env.get(f"OIDC_{name}_{suffix}") or "").strip() or default

        client_id = get("CLIENT_ID")
        if not client_id:
            continue  # bearer tokens only (e.g. the EPR's system account's issuer)
        issuer = get("ISSUER")
        if not issuer:
            raise ConfigError(f"OIDC_{name}_ISSUER is required (OIDC_{name}_CLIENT_ID is set)")
        roles = tuple(r.strip() for r in (get("LOGIN_ROLES") or "").split(",") if r.strip())
        for role in roles:
            if role not in CHOOSABLE_ROLES:
                raise ConfigError(f"OIDC_{name}_LOGIN_ROLES: {role!r} cannot be chosen at login "
                                  f"(only {', '.join(CHOOSABLE_ROLES)}; other roles come from the issuer)")
        static_role = get("STATIC_ROLE")
        if static_role is not None and static_role not in ROLES:
            raise ConfigError(f"OIDC_{name}_STATIC_ROLE must be one of {', '.join(ROLES)}")
        yield OidcLogin(
            name=raw.lower(), label=get("LABEL", raw) or raw, issuer=issuer, client_id=client_id,
            client_secret=get("CLIENT_SECRET"),
            discovery_url=get("DISCOVERY_URL", issuer.rstrip("/") + "/.well-known/openid-configuration") or "",
            scope=get("SCOPE", "openid profile") or "openid profile", roles=roles,
            role_claim=get("ROLE_CLAIM", "role") or "role", subject_claim=get("SUBJECT_CLAIM", "sub") or "sub",
            static_role=static_role,
        )
