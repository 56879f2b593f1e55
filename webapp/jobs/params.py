"""Query parameters read by hand: parsed strictly and within bounds, so bad input is a 4xx, never a 500.

`str.isdigit()` alone is not enough: it accepts "²" and other digits that
int() refuses, and int() turns a thousand digits into a number no database
column holds (or refuses it outright past Python's digit limit).
"""

from __future__ import annotations

# The largest value of a BigAutoField (PostgreSQL bigint, SQLite INTEGER).
MAX_ID = 2**63 - 1


def whole_number(raw: str, highest: int = MAX_ID, clamp: bool = False) -> int | None:
    """`raw` as a whole number from 1 to `highest`; None when it is not one.

    ASCII digits only. Above `highest` it is None, or `highest` with clamp.
    """
    if not (raw.isascii() and raw.isdigit()):
        return None
    digits = raw.lstrip("0")
    if not digits:
        return None
    # Compare lengths before int(): a long string of digits is never converted.
    if len(digits) > len(str(highest)) or int(digits) > highest:
        return highest if clamp else None
    return int(digits)


def id_list(raw: str, most: int) -> list[int]:
    """"1,2,3" -> [1, 2, 3], the first `most` of them; ValueError naming the first bad entry."""
    ids = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue  # "1,2," or an empty parameter
        number = whole_number(part)
        if number is None:
            raise ValueError(f"{part[:20]!r} is not an item id (a whole number from 1 to {MAX_ID})")
        ids.append(number)
        if len(ids) == most:
            break
    return ids
