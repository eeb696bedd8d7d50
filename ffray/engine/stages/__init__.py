"""The worker's stages, one job each: upload, detect, select, swap, paste, enhance, download, and
the adapter for BGR frame processors. Each has ``name``, ``threads``, ``batch`` and
``process(items)`` (``ffray.engine.pipeline.Stage``)."""
