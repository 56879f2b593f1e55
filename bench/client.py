"""An API client for the benchmark: streamed multipart uploads, status, results.

Uploads stream from disk with a known Content-Length, so a 5,000-file job
never sits in the client's memory either.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

Source = Path | bytes


class MultipartBody:
    """multipart/form-data read part by part: file contents come from disk as they are sent."""

    CHUNK = 256 * 1024

    def __init__(self, files: list[tuple[str, Source]], fields: dict[str, str] | None = None, field="images"):
        self.boundary = uuid.uuid4().hex
        dash = f"--{self.boundary}\r\n".encode()
        self._parts: list[Source] = []
        for name, value in (fields or {}).items():
            self._parts.append(dash + f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for filename, source in files:
            safe = filename.replace('"', "_")
            self._parts.append(
                dash
                + f'Content-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode()
            )
            self._parts.append(source)
            self._parts.append(b"\r\n")
        self._parts.append(f"--{self.boundary}--\r\n".encode())
        self._length = sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in self._parts)
        self._chunks = self._generate()
        self._buffer = b""

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def _generate(self) -> Iterator[bytes]:
        for part in self._parts:
            if isinstance(part, bytes):
                yield part
            else:
                with open(part, "rb") as handle:
                    while chunk := handle.read(self.CHUNK):
                        yield chunk

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class Client:
    def __init__(self, web_url: str, token: str):
        self.web_url = web_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def post_job(self, files: list[tuple[str, Source]], model: str | None = None, timeout: float = 600) -> dict:
        body = MultipartBody(files, {"model": model} if model else None)
        response = self.session.post(
            f"{self.web_url}/api/jobs/", data=body, headers={"Content-Type": body.content_type}, timeout=timeout
        )
        if response.status_code != 201:
            raise RuntimeError(f"upload refused ({response.status_code}): {response.text[:500]}")
        return response.json()

    def get(self, path: str, timeout: float = 30) -> requests.Response:
        response = self.session.get(f"{self.web_url}{path}", timeout=timeout)
        response.raise_for_status()
        return response
