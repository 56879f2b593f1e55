"""drf-spectacular post-processing: answers every secured operation can give."""

from __future__ import annotations

UNAUTHENTICATED = {
    "description": "no credentials, or a token that is invalid, expired or revoked",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}},
}


def add_unauthenticated_responses(result, generator, request, public):
    """Document the 401 that DRF gives any call to a secured operation without valid credentials."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation.setdefault("responses", {}).setdefault("401", UNAUTHENTICATED)
    return result
