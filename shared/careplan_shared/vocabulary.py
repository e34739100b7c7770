"""The words of the integration contract, written once: the wire schemas (events/v1.py), the
producer's domain and every consumer's view use these, never their own copies.

Each vocabulary is a ``StrEnum`` (a member is its wire string: ``AgeBand.AGE_18_25 == "18-25"``,
and it is stored and serialised as that string) plus a tuple of the plain strings, in their
documented order, for validators (``marshmallow.validate.OneOf``) and OpenAPI enums.
"""

from __future__ import annotations

from enum import StrEnum

# The upper bound of the open-ended band ("65+"), for arithmetic on age ranges.
OLDEST_AGE = 200


class AgeBand(StrEnum):
    """A patient's age band, given instead of a birth date (data minimisation)."""

    AGE_0_14 = "0-14"
    AGE_15_17 = "15-17"
    AGE_18_25 = "18-25"
    AGE_26_64 = "26-64"
    AGE_65_PLUS = "65+"

    @property
    def years(self) -> tuple[int, int]:
        """The ages in the band, first and last (the last of "65+" is ``OLDEST_AGE``)."""
        return AGE_BAND_YEARS[self]

    @classmethod
    def of_age(cls, years: int) -> AgeBand:
        """The band of an age in whole years (negative: the first band; beyond OLDEST_AGE: the last)."""
        for band, (_, last) in AGE_BAND_YEARS.items():
            if years <= last:
                return band
        return cls.AGE_65_PLUS


AGE_BAND_YEARS: dict[AgeBand, tuple[int, int]] = {
    AgeBand.AGE_0_14: (0, 14),
    AgeBand.AGE_15_17: (15, 17),
    AgeBand.AGE_18_25: (18, 25),
    AgeBand.AGE_26_64: (26, 64),
    AgeBand.AGE_65_PLUS: (65, OLDEST_AGE),
}


class ServiceLevel(StrEnum):
    MUNICIPAL = "municipal"
    SPECIALIST = "specialist"


class ConsentScope(StrEnum):
    """Sections of a plan a relative's consent can cover (Råd 11: scope agreed with the patient)."""

    WHAT_MATTERS = "what_matters"
    GOALS = "goals"
    INFORMATION = "information"
    PARTICIPANTS = "participants"
    EVALUATIONS = "evaluations"
    MEETINGS = "meetings"


class InformationTopic(StrEnum):
    OFFERED_HELP = "offered_help"
    RIGHTS = "rights"
    CHOICES = "choices"
    OTHER = "other"


class InformationForm(StrEnum):
    ORAL = "oral"
    WRITTEN = "written"
    BOTH = "both"


class ParticipantKind(StrEnum):
    RELATIVE = "relative"
    PROFESSIONAL = "professional"


class ExpressedBy(StrEnum):
    """Whose words a goal is in."""

    PATIENT = "patient"
    CLINICIAN = "clinician"


AGE_BANDS: tuple[str, ...] = tuple(band.value for band in AgeBand)
SERVICE_LEVELS: tuple[str, ...] = tuple(level.value for level in ServiceLevel)
CONSENT_SCOPES: tuple[str, ...] = tuple(scope.value for scope in ConsentScope)
INFORMATION_TOPICS: tuple[str, ...] = tuple(topic.value for topic in InformationTopic)
INFORMATION_FORMS: tuple[str, ...] = tuple(form.value for form in InformationForm)
PARTICIPANT_KINDS: tuple[str, ...] = tuple(kind.value for kind in ParticipantKind)
EXPRESSED_BY: tuple[str, ...] = tuple(who.value for who in ExpressedBy)

__all__ = [
    "AGE_BANDS", "AGE_BAND_YEARS", "CONSENT_SCOPES", "EXPRESSED_BY", "INFORMATION_FORMS", "INFORMATION_TOPICS",
    "OLDEST_AGE", "PARTICIPANT_KINDS", "SERVICE_LEVELS",
    "AgeBand", "ConsentScope", "ExpressedBy", "InformationForm", "InformationTopic", "ParticipantKind",
    "ServiceLevel",
]
