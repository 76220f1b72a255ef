"""Character classes: the control characters text shown to a person (a terminal line, a log line, an HTTP
message) never carries raw, and the invisible characters that carry no letter."""

from __future__ import annotations

import re
import unicodedata

#: Unicode's default-ignorable code points (DerivedCoreProperties.txt, Default_Ignorable_Code_Point): invisible
#: characters that carry no letter (zero-width space/joiners, soft hyphen, word joiner, BOM, bidi controls,
#: variation selectors, Hangul fillers, tags)
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]+"
)

#: Unicode categories written as escapes by :func:`visible`: C0 and C1 controls and DEL, line and paragraph
#: separators
_ESCAPED = ("Cc", "Zl", "Zp")


def visible(text: str) -> str:
    """``text`` with its control characters (C0, DEL, C1, line and paragraph separators) written as escapes
    (``\\r``, ``\\x7f``, ``\\u2028``): a response, a log line or a line of output never carries one raw."""
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _ESCAPED else c for c in text
    )


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace and :data:`INVISIBLE` characters (or nothing at all)."""
    return not INVISIBLE.sub("", text).strip()
