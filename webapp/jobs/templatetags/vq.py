"""Small formatting filters for progress bars and scores."""

from __future__ import annotations

import math

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

register = template.Library()


def _fraction(value) -> float:
    try:
        return min(max(float(value), 0.0), 1.0)
    except (TypeError, ValueError):
        return 0.0


@register.filter
def percent_floor(fraction) -> int:
    """0..1 -> a whole percentage, rounded down: 100 only when all is done."""
    return math.floor(_fraction(fraction) * 100)


@register.filter
def bar_width(fraction) -> str:
    """0..1 -> a CSS percentage number with a point whatever the locale ("42.5")."""
    return f"{_fraction(fraction) * 100:.1f}"


@register.filter
def score_percent(score) -> str:
    """A model score 0..1 as "95.7%"."""
    return f"{_fraction(score) * 100:.1f}%"


@register.filter
def short_id(value) -> str:
    return str(value)[:8]


@register.filter
def quoted_list(words) -> str:
    """["egyptian", "mau"] -> “egyptian” and “mau” (escaped)."""
    quoted = [f"“{conditional_escape(word)}”" for word in words]
    text = "".join(quoted) if len(quoted) < 2 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
    return mark_safe(text)  # noqa: S308 - every word is escaped above
