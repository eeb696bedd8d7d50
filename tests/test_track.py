"""Face tracks: association across frames, One-Euro smoothing (less jitter, no smear across cuts),
ordered stages in the engine, and a selection that does not flicker between two people."""

from __future__ import annotations

import random
import threading
import time

import numpy as np

from ffray.engine.pipeline import ChunkRun, Engine, Item
from ffray.engine.stages.select import SelectStage
from ffray.faces.align import Face
from ffray.faces.track import MAX_MISSED, Smoothing, Tracker, iou_matrix, jitter


def _face(cx: float, cy: float, size: float, score: float = 0.9) -> Face:
    h = size / 2
    kps = np.array([[-0.3, -0.2], [0.3, -0.2], [0.0, 0.05], [-0.25, 0.3], [0.25, 0.3]]) * size
    return Face(box=np.array([cx - h, cy - h, cx + h, cy + h], np.float32), score=score,
                kps=(kps + [cx, cy]).astype(np.float32))


def test_smoothing_cuts_jitter_and_follows_motion():
    rng = np.random.default_rng(3)
    tr = Tracker(Smoothing())
    raw, smooth, truth = [], [], []
    for i in range(90):  # 3 s at 30 fps, moving 60 px/s, detector noise 1.5 px
        cx = 200 + 2.0 * i
        f = _face(cx + rng.normal(0, 1.5), 150 + rng.normal(0, 1.5), 80)
        (tid, s), = tr.update([f], i / 30)
        assert tid == 0
        raw.append(f.kps)
        smooth.append(s.kps)
        truth.append(_face(cx, 150, 80).kps)
    j_raw, j_smooth = jitter(raw), jitter(smooth)
    assert j_smooth < 0.4 * j_raw, (j_raw, j_smooth)
    lag = np.abs(np.array(smooth[30:]) - np.array(truth[30:])).mean()
    assert lag < 3.0, lag  # follows the motion: a few pixels behind at most
    off = Tracker(Smoothing(min_cutoff=0))
    (_, same), = off.update([raw_f := _face(10, 10, 40)], 0.0)
    assert same is raw_f


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [50, 50, 50, 60]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 1, 0], [0, 0, 0]])


def test_a_cut_restarts_the_filter():
    tr = Tracker(Smoothing())
    for i in range(10):
        tr.update([_face(100, 100, 80)], i / 30)
    jumped = _face(130, 100, 80)  # overlaps enough to stay the same track, but a big jump
    (tid, s), = tr.update([jumped], 10 / 30)
    assert tid == 0
    np.testing.assert_allclose(s.kps, jumped.kps)  # no smear from before the jump


def test_tracks_keep_their_ids_and_end():
    tr = Tracker(Smoothing())
    ids = []
    for i in range(20):
        faces = [_face(300 - 3 * i, 100, 60), _face(100 + 3 * i, 300, 60)]  # order in a frame varies
        if i % 2:
            faces.reverse()
        out = tr.update(faces, i / 30)
        ids.append({(round(float(f.box[1])) > 200): t for t, f in out})
    assert all(d == ids[0] for d in ids) and sorted(ids[0].values()) == [0, 1]
    for i in range(MAX_MISSED + 1):  # the lower face leaves
        out = tr.update([_face(240 - 3 * i, 100, 60)], (20 + i) / 30)
    assert [t for t, _ in out] == [ids[0][False]]
    assert len(tr.tracks) == 1
    (tid, _), = tr.update([_face(700, 700, 60)], 1.0)  # someone new: a new id
    assert tid == 2


class _Shuffle:
    """Two threads with random delays: frames leave out of order."""

    name, threads, batch, pure = "shuffle", 2, 2, True

    def process(self, items):
        time.sleep(random.random() * 0.003)


class _Record:
    name, threads, batch, ordered = "record", 3, 4, True

    def __init__(self):
        self.seen: dict[int, list[int]] = {}
        self.lock = threading.Lock()

    def process(self, items):
        with self.lock:
            for it in items:
                self.seen.setdefault(it.run.index, []).append(it.seq)


def test_an_ordered_stage_sees_each_chunk_in_order():
    from ffray.engine.chunk import run_chunk

    rec = _Record()
    eng = Engine([_Shuffle(), rec, _Shuffle()])
    assert rec.threads == 1
    try:
        results = {}

        def chunk(i):
            frames = ((k, k, object()) for k in range(40))
            results[i] = run_chunk(eng, i, 40, 8, frames, lambda it: None)

        ths = [threading.Thread(target=chunk, args=(i,)) for i in range(3)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(30)
    finally:
        eng.close()
    assert sorted(rec.seen) == [0, 1, 2]
    for seqs in rec.seen.values():
        assert seqs == list(range(40))


def _items(run, frames):
    return [Item(run=run, seq=i, number=i, pts=i, frame=None, faces=f) for i, f in enumerate(frames)]


def test_select_one_does_not_flicker_between_two_people():
    """Two people of nearly the same size whose detected sizes alternate frame to frame: by size
    alone the choice flips every frame; with tracks it stays on the first choice."""
    frames = []
    for i in range(30):
        a, b = (80 + (i % 2) * 2, 81 - (i % 2) * 2)
        frames.append([_face(150 + i, 200, a), _face(450 - i, 200, b)])

    def chosen(stage):
        run = ChunkRun(0, len(frames), len(frames))
        items = _items(run, frames)
        for k in range(0, len(items), 8):
            stage.process(items[k:k + 8])
        return [float(it.targets[0].face.box[0] + it.targets[0].face.box[2]) / 2 < 300 for it in items]

    untracked = chosen(SelectStage("one", "largest", ops=None))
    tracked = chosen(SelectStage("one", "largest", ops=None, tracking=Smoothing()))
    assert sum(a != b for a, b in zip(untracked, untracked[1:])) >= 20  # the flicker is real
    assert len(set(tracked)) == 1
