"""Which queue serves a model, and which models a worker's queues serve.

Queues are per device class (infer.cpu, infer.gpu): a job goes to the queue
of the pool that serves its model, and a worker loads at start the models
routed to the queues it consumes.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

from ml import available_models


def queue_for_model(model_name: str) -> str:
    """The queue of the pool that serves this model (VQ_MODEL_QUEUES), else the default."""
    return settings.VQ_MODEL_QUEUES.get(model_name, settings.VQ_DEFAULT_QUEUE)


def models_for_queues(queues: Iterable[str]) -> list[str]:
    """Installed models whose jobs are sent to any of these queues."""
    consumed = set(queues)
    return [name for name in available_models() if queue_for_model(name) in consumed]
