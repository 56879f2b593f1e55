"""The one place that decides where the model runs."""

from __future__ import annotations

import os

import torch


def choose_device(preference: str | None = None) -> torch.device:
    """'cuda', 'cuda:N' or 'cpu' when asked; otherwise CUDA when present, else CPU."""
    preference = (preference or os.environ.get("VQ_DEVICE") or "auto").lower()
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} was requested but CUDA is not available here")
    return device


def device_class(device: torch.device) -> str:
    """'gpu' or 'cpu': the name of the worker pool (and queue suffix) that fits."""
    return "gpu" if device.type == "cuda" else "cpu"
