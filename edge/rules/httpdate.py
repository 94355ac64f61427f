"""HTTP-date and delta-seconds parsing (RFC 9110 §5.6.7, RFC 9111 §1.2.2), shared by the rules.

Dates become POSIX timestamps (float seconds, UTC) or None when malformed; a bad date is
never an exception, because every caller has a defined fallback (stale, ignore the
condition). The preferred IMF-fixdate is parsed by position; the obsolete RFC 850 and
asctime forms go through a slower path.
"""

from __future__ import annotations

import calendar
import time

__all__ = ["DELTA_SECONDS_MAX", "format_http_date", "parse_delta_seconds", "parse_http_date"]

# RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2147483648

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_delta_seconds(value: str) -> int | None:
    """Parses `1*DIGIT` (surrounding whitespace allowed); None when not a delta-seconds."""
    value = value.strip()
    if not value or not value.isascii() or not value.isdigit():
        return None
    return min(int(value), DELTA_SECONDS_MAX)


def parse_http_date(value: str | None) -> float | None:
    """Parses an HTTP-date in any of the three RFC 9110 §5.6.7 forms; None if invalid."""
    if not value:
        return None
    value = value.strip()
    # IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters, fixed positions.
    if len(value) == 29 and value[3] == "," and value[25:] == " GMT":
        return _build(value[12:16], value[8:11], value[5:7], value[17:25])
    return _parse_obsolete(value)


def _parse_obsolete(value: str) -> float | None:
    parts = value.split()
    # rfc850-date, e.g. "Sunday, 06-Nov-94 08:49:37 GMT"
    if len(parts) == 4 and parts[0].endswith(",") and parts[3] == "GMT":
        dmy = parts[1].split("-")
        if len(dmy) != 3 or len(dmy[2]) != 2 or not dmy[2].isdigit():
            return None
        # §5.6.7 wants "no more than 50 years ahead"; pure code has no clock, so a fixed
        # pivot stands in: 70-99 are 19xx, 00-69 are 20xx.
        yy = int(dmy[2])
        year = str(1900 + yy if yy >= 70 else 2000 + yy)
        return _build(year, dmy[1], dmy[0], parts[2])
    # asctime-date, e.g. "Sun Nov  6 08:49:37 1994"
    if len(parts) == 5 and len(parts[0]) == 3 and not parts[0].endswith(","):
        return _build(parts[4], parts[1], parts[2], parts[3])
    return None


def _build(year: str, month: str, day: str, hms: str) -> float | None:
    mon = _MONTHS.get(month.lower())
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
