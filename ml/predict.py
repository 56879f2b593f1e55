"""Batched classification: uint8 crops in, top-k labels with scores out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

from ml.device import choose_device
from ml.registry import ModelSpec, get_spec

log = logging.getLogger(__name__)

TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    label: str
    class_index: int
    score: float

    def as_dict(self) -> dict:
        return asdict(self)


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """The network with its pretrained weights, on the CPU, in eval mode."""
    network = EfficientNet.from_name(spec.name)
    state = torch.load(spec.weights_path(), map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    return network.eval()


class Classifier:
    """One model on one device. Build it once per process and reuse it."""

    def __init__(
        self,
        model_name: str,
        device: torch.device | str | None = None,
        channels_last: bool = True,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.spec = get_spec(model_name)
        self.device = device if isinstance(device, torch.device) else choose_device(device)
        self.channels_last = channels_last
        # Mixed precision only pays on accelerators; on the CPU it is slower.
        self.autocast_dtype = autocast_dtype if self.device.type == "cuda" else None
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.network = build_network(self.spec).to(self.device, memory_format=memory_format)
        self.labels = self.spec.labels

    def warm_up(self, batch_size: int = 1) -> None:
        """One forward pass so the first real batch does not pay for lazy set-up."""
        size = self.spec.input_size
        self.predict(np.zeros((batch_size, size, size, 3), dtype=np.uint8))

    def to_input(self, crops: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> normalised float (N, 3, H, W) on the device.

        Permuting NHWC gives a channels-last tensor without a copy; the uint8
        batch crosses to the device before it becomes four times larger.
        """
        batch = np.stack(crops) if not isinstance(crops, np.ndarray) else crops
        pixels = torch.from_numpy(batch).to(self.device, non_blocking=True)
        pixels = pixels.permute(0, 3, 1, 2)
        if not self.channels_last:
            pixels = pixels.contiguous()
        scale = 1.0 / (255.0 * self.spec.std)
        shift = self.spec.mean / self.spec.std
        return pixels.float().mul_(scale).sub_(shift)

    @torch.inference_mode()
    def logits(self, crops: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        inputs = self.to_input(crops)
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                return self.network(inputs).float()
        return self.network(inputs)

    def predict(self, crops: np.ndarray | Sequence[np.ndarray], k: int = TOP_K) -> list[list[Prediction]]:
        """Top-k predictions per crop, best first, in input order."""
        if len(crops) == 0:
            return []
        probabilities = torch.softmax(self.logits(crops), dim=1)
        scores, indices = probabilities.topk(k, dim=1)
        return [
            [
                Prediction(label=self.labels[index], class_index=index, score=round(score, 6))
                for score, index in zip(row_scores, row_indices)
            ]
            for row_scores, row_indices in zip(scores.cpu().tolist(), indices.cpu().tolist())
        ]
