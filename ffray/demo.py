"""``ffray demo``: offline, on a local Ray instance, the whole distributed path on real faces.

It writes a sample video with audio (a pan/zoom over insightface's t1.jpg, six real faces), takes
skimage's astronaut as the source face, runs it through ``ffray swap``'s job path at the default
layout (one worker, several chunks at once) and prints where everything is. The face pipeline is
the offline default: MTCNN detection and the classic swapper (no downloaded weights).
"""

from __future__ import annotations

import cv2

from ffray.settings import data_dir
from ffray.video.sample import astronaut_face, make_demo_video


def run_demo(args) -> int:
    from ffray.cluster.prepare import prepare_swap
    from ffray.cluster.spec import SwapRequest
    from ffray.processors import ProcessorSpec
    from ffray.progress import run_with_progress

    root = data_dir(args.data_dir)
    demo = root / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    sample = demo / "sample.mp4"
    source = demo / "source_astronaut.jpg"
    output = demo / "output.mp4"
    print(f"making the sample video {sample} ({args.seconds:g} s, 960x540, audio)")
    make_demo_video(sample, seconds=args.seconds)
    cv2.imwrite(str(source), astronaut_face())
    req = SwapRequest(input=str(sample), output=str(output), sources=[str(source)], overwrite=True,
                      processor=ProcessorSpec(kind="faceswap"),
                      actors=args.actors, address=args.address)
    ledger = prepare_swap(req, root)
    rc = run_with_progress(ledger, address=args.address, verbose=args.verbose)
    print(f"demo done:\n  input   {sample}\n  source  {source}\n  output  {output}\n"
          f"  ledger  {ledger.root}")
    return rc
