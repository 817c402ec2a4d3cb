"""Kong-style vault references in configuration values: ``{vault://env/NAME}``.

A credential value may be, or contain, references that are resolved when the
value is used, so the secret itself is never stored: ``Bearer
{vault://env/OPENAI_API_KEY}``. The grammar is Kong's:

``{vault://<vault>/<name>[/<key>]}``

``env`` is the only vault: ``<name>`` names an environment variable of the
gateway process, upper-cased with ``-`` read as ``_`` (``openai-api-key`` is
``OPENAI_API_KEY``), and ``<key>`` selects one field of a variable holding a
JSON object. The text of a reference is not secret: the Admin API shows it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Reference", "VAULTS", "check_references", "find_references", "has_reference",
           "shows_no_secret"]

VAULTS = ("env",)
MARK = "{vault://"
_REFERENCE = re.compile(r"\{vault://([A-Za-z0-9_-]+)/([A-Za-z_][A-Za-z0-9_-]*)(?:/([A-Za-z0-9_.-]+))?\}")
#: what may stand before the references of a value shown as is: an auth scheme word
_SCHEME = re.compile(r"[A-Za-z]{1,20} ?")


@dataclass(frozen=True, slots=True)
class Reference:
    text: str          # "{vault://env/OPENAI_API_KEY}", as written
    vault: str         # "env"
    name: str          # "OPENAI_API_KEY" as written
    key: str | None    # a field of a JSON value, or None

    @property
    def variable(self) -> str:
        """The environment variable an ``env`` reference reads (Kong's mapping)."""
        return self.name.upper().replace("-", "_")

    @property
    def label(self) -> str:
        """How messages name it: ``vault://env/NAME`` (never its value)."""
        return self.text[1:-1]


def has_reference(value: str) -> bool:
    return MARK in value


def find_references(value: str) -> list[tuple[int, int, Reference]]:
    """Each well-formed reference in ``value`` with its span."""
    return [(m.start(), m.end(), Reference(m[0], m[1], m[2], m[3])) for m in _REFERENCE.finditer(value)]


def check_references(value: str) -> str:
    """Refuse malformed references and unknown vaults; the message never shows the value."""
    if MARK not in value:
        return value
    found = find_references(value)
    if len(found) != value.count(MARK):
        raise ValueError("invalid vault reference: expected {vault://env/NAME} or {vault://env/NAME/key}")
    for _, _, ref in found:
        if ref.vault not in VAULTS:
            raise ValueError(f"unknown vault '{ref.vault}' in a reference: expected one of: {', '.join(VAULTS)}")
    return value


def shows_no_secret(value: str) -> bool:
    """True for a value made of references only, with at most an auth scheme word
    before them (``{vault://env/KEY}``, ``Bearer {vault://env/KEY}``): its text can
    be shown. A value with any other literal text stays masked."""
    found = find_references(value)
    if not found:
        return False
    last = found[0][0]
    for start, end, _ in found:
        if start != last:
            return False  # text between two references
        last = end
    if last != len(value):
        return False  # text after the references
    prefix = value[:found[0][0]]
    return not prefix or bool(_SCHEME.fullmatch(prefix))
