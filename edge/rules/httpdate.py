"""HTTP-date and delta-seconds parsing (RFC 9110 §5.6.7, RFC 9111 §1.2.2), shared by the rules.

Dates become POSIX timestamps (float seconds, UTC) or None when malformed; a bad date is
never an exception, because every caller has a defined fallback (stale, ignore the
condition). The preferred IMF-fixdate is parsed by position; the obsolete RFC 850 and
asctime forms go through regular expressions. All three follow the grammar to the letter.
"""

from __future__ import annotations

import calendar
import re
import time

__all__ = ["DELTA_SECONDS_MAX", "format_http_date", "parse_delta_seconds", "parse_http_date"]

# RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2147483648

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}  # case-sensitive
_LONG_DAY_NAMES = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTH = "|".join(_MONTH_NAMES)
_TIME = r"([0-9]{2}:[0-9]{2}:[0-9]{2})"
_RFC850 = re.compile(rf"(?:{_LONG_DAY_NAMES}), ([0-9]{{2}})-({_MONTH})-([0-9]{{2}}) {_TIME} GMT")
_ASCTIME = re.compile(rf"(?:{'|'.join(_DAY_NAMES)}) ({_MONTH}) ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})")


def parse_delta_seconds(value: str) -> int | None:
    """Parses `1*DIGIT` (surrounding whitespace allowed); None when not a delta-seconds."""
    value = value.strip()
    if not value or not value.isascii() or not value.isdigit():
        return None
    return min(int(value), DELTA_SECONDS_MAX)


def parse_http_date(value: str | None) -> float | None:
    """Parses an HTTP-date in any of the three RFC 9110 §5.6.7 forms; None if invalid.

    The grammar is followed exactly (case-sensitive names, single spaces, two-digit hours):
    RFC 9111 §5.3 wants an invalid Expires read as "already expired", so a near-miss such as
    "Thu, 18-Aug-2050 02:01:18 GMT" or "thu, 18 aug 2050 ..." must not pass for a date.
    """
    if not value:
        return None
    value = value.strip()
    # IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters, fixed positions.
    if (
        len(value) == 29
        and value[3:5] == ", "
        and value[7] == value[11] == value[16] == " "
        and value[25:] == " GMT"
        and value[:3] in _DAY_NAMES
    ):
        return _build(value[12:16], value[8:11], value[5:7], value[17:25])
    return _parse_obsolete(value)


def _parse_obsolete(value: str) -> float | None:
    # rfc850-date, e.g. "Sunday, 06-Nov-94 08:49:37 GMT"
    match = _RFC850.fullmatch(value)
    if match is not None:
        day, month, yy, hms = match.groups()
        # §5.6.7 wants "no more than 50 years ahead"; pure code has no clock, so a fixed
        # pivot stands in: 70-99 are 19xx, 00-69 are 20xx.
        year = str(1900 + int(yy) if int(yy) >= 70 else 2000 + int(yy))
        return _build(year, month, day, hms)
    # asctime-date, e.g. "Sun Nov  6 08:49:37 1994"
    match = _ASCTIME.fullmatch(value)
    if match is not None:
        month, day, hms, year = match.groups()
        return _build(year, month, day.lstrip(" "), hms)
    return None


def _build(year: str, month: str, day: str, hms: str) -> float | None:
    mon = _MONTHS.get(month)
    if mon is None or len(year) != 4 or len(hms) != 8 or hms[2] != ":" or hms[5] != ":":
        return None
    fields = (year, day, hms[0:2], hms[3:5], hms[6:8])
    if not all(f.isascii() and f.isdigit() for f in fields) or not 1 <= len(day) <= 2:
        return None
    y, d, hh, mm, ss = (int(f) for f in fields)
    # §5.6.7 allows a leap second (60); it is folded into the minute's last second.
    if y < 1 or not 1 <= d <= calendar.monthrange(y, mon)[1]:
        return None
    if hh > 23 or mm > 59 or ss > 60:
        return None
    return float(calendar.timegm((y, mon, d, hh, mm, min(ss, 59), 0, 0, 0)))


def format_http_date(timestamp: float) -> str:
    """Formats a POSIX timestamp as an IMF-fixdate (RFC 9110 §5.6.7)."""
    t = time.gmtime(timestamp)
    return (
        f"{_DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {_MONTH_NAMES[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
