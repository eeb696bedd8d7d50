"""Where the face pipeline's model runners come from, on the host: ORT sessions built from the
model bytes the driver shipped (contract-checked), run with NumPy arrays. The GPU worker uses
``ffray.models.gpu_loader.DeviceLoader`` instead (prepared models, IO binding)."""

from __future__ import annotations

from ffray.errors import FFrayError
from ffray.models.manifest import check_contract, get
from ffray.models.runner import HostRunner
from ffray.models.sessions import choose_providers, make_session


class HostLoader:
    def __init__(self, models: dict, providers=None, threads: int = 1, device_id: int = 0):
        self.models = dict(models)
        self.providers = choose_providers(list(providers) if providers else None, device_id=device_id)
        self.threads = threads
        self.notes: list[str] = []

    def raw(self, name: str) -> bytes:
        data = self.models.get(name)
        if data is None:
            raise FFrayError(f"the face pipeline needs the {name} model: run `ffray models fetch {name}` "
                             "or pass --model-dir")
        return data

    def derived(self, name: str, tag: str, compute):
        """``compute(raw bytes of model name)``: on the host the bytes are here, and no node cache
        is kept (``DeviceLoader.derived`` keeps one for GPU workers)."""
        return compute(self.raw(name))

    def runner(self, name: str, flat_outputs: bool = False, batch: int = 1,
               sessions: int = 1) -> HostRunner:
        """One session whatever ``sessions`` says: on the CPU a session's runs from several
        threads do not queue on a device stream (its intra-op threads do the work)."""
        session = make_session(self.raw(name), self.providers, self.threads, what=name)
        check_contract(session, get(name))
        return HostRunner(session, flat_outputs=flat_outputs)

    def session(self, path):
        return make_session(path, self.providers, self.threads, what=str(path))
