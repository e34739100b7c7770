"""Language and time on the pages: Norwegian bokmål by default, English by a remembered
switch; dates and times in Europe/Oslo.

Catalogues are gettext .po files (``translations/<lang>/LC_MESSAGES/messages.po``) in the
shared package and in each service's pages package; message ids are English. They are read
as they are (no compile step, nothing generated to keep in step): each is compiled in memory
once per process, on its first use.
"""

from __future__ import annotations

import io
import threading
from functools import cached_property
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from flask import Flask, request
from flask_babel import Babel, Domain

LANGUAGES = {"nb": "Norsk (bokmål)", "en": "English"}
DEFAULT_LANGUAGE = "nb"
TIMEZONE = "Europe/Oslo"
LANGUAGE_COOKIE = "careplan_lang"


def selected_language() -> str:
    lang = request.cookies.get(LANGUAGE_COOKIE, "")
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


class PoDomain(Domain):
    """A flask-babel domain that reads .po catalogues directly."""

    def __init__(self, directories: list[Path]):
        super().__init__(translation_directories=[str(d) for d in directories])
        self._lock = threading.Lock()

    def get_translations(self):  # type: ignore[no-untyped-def]
        from flask_babel import get_locale

        locale = str(get_locale() or DEFAULT_LANGUAGE)
        cached = self.cache.get(locale)
        if cached is not None:
            return cached
        with self._lock:
            merged = Translations()
            for directory in self.translation_directories:
                po = Path(directory) / locale / "LC_MESSAGES" / "messages.po"
                if po.is_file():
                    with po.open("rb") as f:
                        catalog = read_po(f, locale=locale)
                    buffer = io.BytesIO()
                    write_mo(buffer, catalog)
                    buffer.seek(0)
                    merged.merge(Translations(fp=buffer))
            self.cache[locale] = merged
            return merged


class PoBabel(Babel):
    def __init__(self, app: Flask, directories: list[Path]):
        self._directories = directories
        super().__init__(app, locale_selector=selected_language, timezone_selector=lambda: TIMEZONE,
                         default_locale=DEFAULT_LANGUAGE, default_timezone=TIMEZONE)

    @cached_property
    def domain_instance(self) -> Domain:  # type: ignore[override]
        return PoDomain(self._directories)


def install(app: Flask, directories: list[Path]) -> None:
    PoBabel(app, directories)
