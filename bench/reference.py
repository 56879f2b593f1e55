"""R, the reference loop: what a person would write by hand to classify a folder.

One process, plain code: open each file with Pillow, convert to RGB, resize
the shorter side to 256, centre crop 224, scale to [-1, 1], stack 8 into a
tensor, run the model under no_grad, softmax, top-5. Same weights, default
layout, torch's default threads, no draft-mode decoding, no overlap. The
system has to beat this by doing the same work better, not by doing less.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml.predict import build_network
from ml.registry import get_spec

BATCH = 8


def _preprocess(path: Path, resize: int, crop: int) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    width, height = image.size
    scale = resize / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    left = (image.width - crop) // 2
    top = (image.height - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - 0.5) / 0.5
    return torch.from_numpy(pixels).permute(2, 0, 1)


def run(paths: list[Path], model: str, device: str) -> dict:
    """Classify every file; returns images/s and the top-1 class of each file."""
    spec = get_spec(model)
    network = build_network(spec).to(device)
    top1: list[int] = []
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(paths), BATCH):
            batch = torch.stack([_preprocess(p, spec.resize_size, spec.input_size) for p in paths[start : start + BATCH]])
            probabilities = torch.softmax(network(batch.to(device)), dim=1)
            _, indices = probabilities.topk(5, dim=1)
            top1.extend(indices[:, 0].tolist())
    elapsed = time.perf_counter() - started
    return {"images": len(paths), "seconds": round(elapsed, 2), "images_per_s": round(len(paths) / elapsed, 1), "top1": top1}
