"""Image recognition, free of Django and Celery.

    from ml import Classifier, load_pixels, get_spec
    classifier = Classifier("efficientnet-lite0")
    crop = load_pixels("cat.jpg", classifier.spec)
    classifier.predict([crop])[0][0]  # Prediction(label='tabby cat', ...)
"""

from ml.imaging import (
    NOT_AN_IMAGE,
    CorruptImage,
    ImageError,
    ImageInfo,
    ImageTooLarge,
    UnsupportedImage,
    could_be_supported_image,
    inspect_image,
    load_rgb,
    make_thumbnail,
)
from ml.preprocess import crop_and_resize, load_pixels
from ml.registry import DEFAULT_MODEL, MODELS, ModelSpec, ModelUnavailable, UnknownModel, available_models, get_spec


def __getattr__(name: str):
    # The model side (torch, ~200 MB resident) loads on first use only, so
    # processes that merely check uploads or route jobs (the web server)
    # never import torch.
    if name in ("Classifier", "Prediction"):
        from ml import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'ml' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "NOT_AN_IMAGE",
    "Classifier",
    "CorruptImage",
    "ImageError",
    "ImageInfo",
    "ImageTooLarge",
    "ModelSpec",
    "ModelUnavailable",
    "Prediction",
    "UnknownModel",
    "UnsupportedImage",
    "available_models",
    "could_be_supported_image",
    "crop_and_resize",
    "get_spec",
    "inspect_image",
    "load_pixels",
    "load_rgb",
    "make_thumbnail",
]
