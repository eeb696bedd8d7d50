"""Upload and download: frames between the decoder's memory and the frame backend's device."""

from __future__ import annotations

from ffray.engine.pipeline import Item


class _Transfer:
    """Calls the backend's operation of the stage's name on the batch's frames."""

    name = ""
    pure = True  # sets frame buffers only: a failed mixed batch is retried per chunk

    def __init__(self, ops, threads: int = 1, batch: int = 4):
        self.ops, self.threads, self.batch = ops, threads, batch

    def process(self, items: list[Item]) -> None:
        getattr(self.ops, self.name)([it.frame for it in items])


class UploadStage(_Transfer):
    """Decoded frame -> the backend's packed YUV copy (host buffer, or GPU buffer)."""

    name = "upload"


class DownloadStage(_Transfer):
    """Changed frames back to the host for the encoder (nothing to do on the CPU backend)."""

    name = "download"
