"""GPU checks on the device machine: the CuPy frame backend against the CPU one on a real 1080p
frame, prepared models (batch edit, fp16) against the originals, batch-position determinism,
fp16/fp32 differences on real face crops, and CUDA graphs against ordinary runs (same bits, time).
Prints a table; writes JSON.

    python scripts/gpu_selftest.py --models DIR [--background IMG] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.engine.colour import Matrix  # noqa: E402
from ffray.engine.frames import Frame, layout_for, planes  # noqa: E402
from ffray.engine.ops_cpu import CpuOps  # noqa: E402
from ffray.engine.ops_gpu import GpuOps  # noqa: E402
from ffray.faces.align import insightface_template, similarity  # noqa: E402
from ffray.faces.blend import face_mask  # noqa: E402
from ffray.models.device import DeviceRunner  # noqa: E402
from ffray.models.gpu_loader import DeviceLoader  # noqa: E402
from ffray.models.manifest import MODELS  # noqa: E402
from ffray.models.runner import HostRunner  # noqa: E402
from ffray.models.sessions import choose_providers, make_session  # noqa: E402
from ffray.settings import sha256_file  # noqa: E402
from ffray.video.probe import Color  # noqa: E402


def frame_1080(bg: np.ndarray) -> av.VideoFrame:
    img = cv2.resize(bg, (1920, 1080), interpolation=cv2.INTER_AREA)
    vf = av.VideoFrame.from_ndarray(img, format="bgr24")
    return vf.reformat(format="yuv420p", src_colorspace=1, dst_colorspace=1, dst_color_range=1)


def faces_in(w: int, h: int, n: int, rng) -> list[np.ndarray]:
    """Five-point sets of plausible faces spread over the frame."""
    out = []
    for _ in range(n):
        cx, cy, s = rng.uniform(300, w - 300), rng.uniform(250, h - 250), rng.uniform(60, 160)
        ang = rng.uniform(-0.4, 0.4)
        pts = (insightface_template(112) - 56) / 40 * s
        r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        out.append((pts @ r.T + [cx, cy]).astype(np.float32))
    return out


def ops_checks(bg: np.ndarray, rng) -> dict:
    vf = frame_1080(bg)
    lay = layout_for("yuv420p", 1920, 1080)
    mat = Matrix.of(Color(1, 1, 1, 1), 1080)
    cpu, gpu = CpuOps(lay, mat), GpuOps(lay, mat, 0)
    fc, fg = [Frame(decoded=vf) for _ in range(3)], [Frame(decoded=vf) for _ in range(3)]
    cpu.upload(fc)
    gpu.upload(fg)
    res = {}
    a, _ = cpu.det_blob(fc, (640, 640))
    b, _ = gpu.det_blob(fg, (640, 640))
    d = np.abs(a - gpu.host(b)) * 128
    res["det_blob_levels"] = {"max": float(d.max()), "mean": float(d.mean())}
    for rot in (90, 270):  # a phone video's upright view, composed into the sampling matrix
        cr, gr = CpuOps(lay, mat, rotation=rot), GpuOps(lay, mat, 0, rotation=rot)
        a_r, back_c = cr.det_blob(fc[:1], (640, 640))
        b_r, back_g = gr.det_blob(fg[:1], (640, 640))
        d = np.abs(a_r - gpu.host(b_r)) * 128
        res[f"det_blob_rot{rot}_levels"] = {"max": float(d.max()), "mean": float(d.mean()),
                                            "same_map_back": bool(np.allclose(back_c[0], back_g[0]))}
    sa, _ = cpu.small_bgr(fc[:1], 640)
    sb, _ = gpu.small_bgr(fg[:1], 640)
    d = np.abs(sa[0].astype(int) - sb[0].astype(int))
    res["small_bgr_levels"] = {"max": int(d.max()), "mean": float(d.mean())}
    kps = faces_in(1920, 1080, 6, rng)
    mats = [similarity(k, insightface_template(128)) for k in kps]
    a = cpu.crops([fc[0]] * 6, mats, 128, 0.0, 255.0)
    b = gpu.host(gpu.crops([fg[0]] * 6, mats, 128, 0.0, 255.0))
    d = np.abs(a - b) * 255
    res["crop128_levels"] = {"max": float(d.max()), "mean": float(d.mean()),
                             "p999": float(np.quantile(d, 0.999))}
    crops = np.clip(cv2.resize(rng.uniform(0, 1, (16, 16, 18)).astype(np.float32), (128, 128))
                    .transpose(2, 0, 1).reshape(6, 3, 128, 128), 0, 1).astype(np.float32)
    mask = face_mask(128, pts=insightface_template(128))
    before = fc[1].host.copy()
    cpu.paste([fc[1]] * 6, crops, mats, mask, 255.0, 0.0)
    gpu.paste([fg[1]] * 6, gpu.to_device(crops), mats, gpu.to_device(mask), 255.0, 0.0)
    gpu.download([fg[1]])
    for name, pa, pb, p0 in zip("YUV", planes(fc[1].host, lay), planes(fg[1].host, lay),
                                planes(before, lay)):
        d = np.abs(pa.astype(int) - pb.astype(int))
        untouched = (pa == p0) & (pb == p0)
        res[f"paste_{name}"] = {"max": int(d.max()), "mean": float(d.mean()),
                                "share_gt2": float((d > 2).mean()),
                                "changed_share": float((pa != p0).mean())}
        assert np.array_equal(pa[untouched], pb[untouched])
    # one mask per face (an occluder's), through the kernel's per-face mask path
    per = np.stack([mask * (np.arange(128) < 64 + 10 * k)[:, None] for k in range(6)]).astype(np.float32)
    fc2, fg2 = Frame(decoded=vf), Frame(decoded=vf)
    cpu.upload([fc2])
    gpu.upload([fg2])
    cpu.paste([fc2] * 6, crops, mats, per, 255.0, 0.0)
    gpu.paste([fg2] * 6, gpu.to_device(crops), mats, gpu.to_device(per), 255.0, 0.0)
    gpu.download([fg2])
    d = np.abs(fc2.host.astype(int) - fg2.host.astype(int))
    res["paste_per_face_masks"] = {"max": int(d.max()), "mean": float(d.mean())}
    t = time.perf_counter()
    for _ in range(20):
        g = [Frame(decoded=vf) for _ in range(4)]
        gpu.upload(g)
        gpu.det_blob(g, (640, 640))
        gpu.crops(g * 2, mats[:8] + mats[:2], 128, 0.0, 255.0)
        gpu.paste(g, gpu.to_device(crops[:4]), mats[:4], gpu.to_device(mask), 255.0, 0.0)
        gpu.download(g)
    res["gpu_ops_ms_per_frame"] = (time.perf_counter() - t) / 80 * 1000
    return res


def model_checks(model_dir: Path, rng) -> dict:
    providers = choose_providers(None, device_id=0)
    out = {"providers": [p[0] if isinstance(p, tuple) else p for p in providers]}
    names = {"det_10g": 4, "w600k_r50": 8, "inswapper_128": 8, "gfpgan_1.4": 4}
    files = {n: model_dir / MODELS[n].file for n in names}
    sha = {n: sha256_file(p) for n, p in files.items()}
    data = {n: p.read_bytes() for n, p in files.items()}
    cache = Path("/tmp/ffray-selftest-cache")
    for precision in ("fp32", "auto"):
        loader = DeviceLoader(data, sha, 0, providers, precision, cache=cache)
        for n, b in names.items():
            r = loader.runner(n, flat_outputs=(n == "det_10g"), batch=b)
            host = HostRunner(make_session(data[n], ["CPUExecutionProvider"]),
                              flat_outputs=(n == "det_10g"))
            feeds = {i.name: _feed(i, 5, rng, n) for i in host.session.get_inputs()}
            got = r.host_run(feeds)
            ref = host.run(feeds)
            rel = max(float(np.abs(a - b_).max() / max(1e-6, np.abs(a).max())) for a, b_ in zip(ref, got))
            out[f"{n}_{precision}"] = {"verdict": loader.notes[n], "rel_err_vs_cpu": rel}
            # determinism: item 0 alone (padded) and item 0 among others, at another position
            one = r.host_run({k: v[:1] for k, v in feeds.items()})
            mixed = r.host_run({k: np.concatenate([v[1:4], v[:1], v[4:]]) for k, v in feeds.items()})
            same = all(np.array_equal(o[0], m[3]) for o, m in zip(one, mixed))
            out[f"{n}_{precision}"]["bitwise_same_in_any_batch_position"] = bool(same)
            out[f"{n}_{precision}"]["timing"] = _timing(r, feeds)
            if precision == "auto":
                out[f"{n}_cuda_graph"] = _variant_check(data, sha, providers, cache, n, r, feeds,
                                                        graphs=True)
                out[f"{n}_shared_stream"] = _variant_check(data, sha, providers, cache, n, r, feeds,
                                                           shared_streams=True)
    return out


def _variant_check(data, sha, providers, cache, name: str, plain: DeviceRunner, feeds: dict,
                   **variant) -> dict:
    """The model with CUDA graphs, or on this thread's own stream (``variant``: the loader's
    switch; warmed by this thread), against the same prepared graph without: the same bits for
    the same inputs (5 items: a full group and a padded one)?"""
    loader = DeviceLoader(data, sha, 0, providers, "auto", cache=cache, **variant)
    r = loader.runner(name, flat_outputs=(name == "det_10g"), batch=plain.batch)
    r.warm({k: v.shape[1:] for k, v in feeds.items()})
    got, ref = r.host_run(feeds), plain.host_run(feeds)
    note = loader.notes[name]
    return {"graphs": note.get("graphs", 0), "shared_streams": note.get("shared_streams", 0),
            "refused": note.get("graph_refused") or note.get("stream_refused"),
            "same_bits_as_without": all(np.array_equal(a, b) for a, b in zip(ref, got)),
            "timing": _timing(r, feeds)}


def _feed(inp, n: int, rng, name: str) -> np.ndarray:
    shape = [n] + [d if isinstance(d, int) else 640 for d in inp.shape[1:]]
    if len(shape) == 2:
        x = rng.standard_normal(shape).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    small = rng.uniform(-1, 1, (n, shape[1], 8, 8)).astype(np.float32)
    return np.kron(small, np.ones((shape[2] // 8, shape[3] // 8), np.float32))


def _timing(r: DeviceRunner, feeds: dict) -> dict:
    import cupy as cp

    res = {}
    dev = {k: cp.asarray(np.repeat(v[:1], r.batch, axis=0)) for k, v in feeds.items()}
    for _ in range(3):
        r.run(dev)
    cp.cuda.Device(0).synchronize()
    ts = []
    for _ in range(15):
        t = time.perf_counter()
        r.run(dev)
        ts.append(time.perf_counter() - t)
    res["batch"] = r.batch
    res["ms_per_call"] = float(np.median(ts) * 1000)
    res["ms_per_item"] = res["ms_per_call"] / r.batch
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--background")
    ap.add_argument("--out", default="selftest.json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    bg = cv2.imread(a.background) if a.background else np.full((1080, 1920, 3), 128, np.uint8)
    res = {"ops": ops_checks(bg, rng), "models": model_checks(Path(a.models), rng)}
    Path(a.out).write_text(json.dumps(res, indent=2, default=str))
    for k, v in res["ops"].items():
        print(f"ops {k}: {v}")
    for k, v in res["models"].items():
        if k.endswith(("_cuda_graph", "_shared_stream")):
            print(f"model {k}: {v}")
        elif isinstance(v, dict):
            tries = v["verdict"].get("tries")
            print(f"model {k}: batch {v['verdict']['batch']} fp16 {v['verdict']['fp16']} "
                  f"rel_err_vs_cpu {v['rel_err_vs_cpu']:.2e} same_any_pos "
                  f"{v['bitwise_same_in_any_batch_position']} {v['timing']} tries {tries}")


if __name__ == "__main__":
    main()
