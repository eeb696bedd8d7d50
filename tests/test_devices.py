"""CUDA device mapping (Ray's GPU ids -> the worker's CUDA ordinal) and the provider check."""

from __future__ import annotations

import pytest

from ffray.errors import FFrayError
from ffray.models.devices import check_provider, cuda_ordinal


@pytest.mark.parametrize("ids, visible, want", [
    (["0"], "0", 0),
    (["3"], "3", 0),  # Ray's physical GPU 3 is CUDA device 0 inside the worker
    (["5", "6"], "5,6", 0),
    (["6"], "5,6", 1),
    ([2], "2", 0),  # ints as ray.get_gpu_ids() may give them
    (["GPU-8f3b1c2d-aaaa-bbbb-cccc-000000000001"],
     "GPU-8f3b1c2d-aaaa-bbbb-cccc-000000000001", 0),
    (["GPU-8f3b1c2d-aaaa-bbbb-cccc-000000000002"],
     "GPU-8f3b1c2d-aaaa-bbbb-cccc-000000000001,GPU-8f3b1c2d-aaaa-bbbb-cccc-000000000002", 1),
    (["GPU-8f3b1c2d-aaaa-bbbb-cccc-000000000002"], "GPU-1234,GPU-8f3b1c2d", 1),  # UUID prefixes
    (["MIG-11111111-2222-3333-4444-555555555555"], "MIG-11111111-2222-3333-4444-555555555555", 0),
    (["4"], None, 4),  # no CUDA_VISIBLE_DEVICES: CUDA sees every device, the index is the ordinal
    (["4"], "", 4),
    (["1"], " 0, 1 ", 1),
])
def test_cuda_ordinal(ids, visible, want):
    assert cuda_ordinal(ids, visible) == want


@pytest.mark.parametrize("ids, visible", [([], "0"), (["7"], "0,1"),
                                          (["GPU-abcd-0000"], None)])
def test_cuda_ordinal_refuses_what_it_cannot_map(ids, visible):
    with pytest.raises(FFrayError):
        cuda_ordinal(ids, visible)


class _Session:
    def __init__(self, providers):
        self._p = providers

    def get_providers(self):
        return self._p


def test_a_gpu_session_that_fell_back_to_the_cpu_is_an_error():
    check_provider(_Session(["CUDAExecutionProvider", "CPUExecutionProvider"]),
                   "CUDAExecutionProvider", "det_10g")
    check_provider(_Session(["CPUExecutionProvider"]), "CPUExecutionProvider", "det_10g")
    with pytest.raises(FFrayError, match="did not start CUDAExecutionProvider.*--providers cpu"):
        check_provider(_Session(["CPUExecutionProvider"]), "CUDAExecutionProvider", "det_10g")


def test_make_session_checks_the_provider_it_got(tmp_path, monkeypatch):
    """ORT falls back to the CPU without a word (e.g. for a device id it cannot open):
    make_session must notice, whatever ORT says."""
    import onnxruntime as ort

    from ffray.models import sessions
    from scripts.make_test_models import write_all

    path = write_all(tmp_path)["w600k_r50.onnx"]

    class Fallback(ort.InferenceSession):
        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(ort, "InferenceSession", Fallback)
    with pytest.raises(FFrayError, match="did not start CUDAExecutionProvider"):
        sessions.make_session(path, [("CUDAExecutionProvider", {"device_id": 0}),
                                     "CPUExecutionProvider"], what="w600k_r50")
    assert sessions.make_session(path, ["CPUExecutionProvider"]).get_providers()[0] == \
        "CPUExecutionProvider"


def test_provider_short_names_and_device_options(monkeypatch):
    import onnxruntime as ort

    from ffray.models import sessions

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    got = sessions.choose_providers(["cuda"], device_id=2)
    assert got[0] == ("CUDAExecutionProvider", {"device_id": 2, "cudnn_conv_algo_search": "HEURISTIC",
                                                "cudnn_conv_use_max_workspace": "1",
                                                "arena_extend_strategy": "kSameAsRequested"})
    assert sessions.choose_providers(["cpu"]) == ["CPUExecutionProvider"]
    with pytest.raises(FFrayError, match="lacks TensorrtExecutionProvider"):
        sessions.choose_providers(["tensorrt"])
