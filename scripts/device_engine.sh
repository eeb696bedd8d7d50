#!/usr/bin/env bash
# On the GPU machine (device tool), after the packed site parts were copied to /tmp/devpack:
#   bash scripts/device_engine.sh install selftest "bench NAME ARGS..." ceilings
# install : unpack ray/av/onnxruntime-gpu into /tmp/site; cost-matched contract models in /tmp/cm;
#           benchmark inputs (2-minute 1080p30, 1 and 6 face markers) in /tmp/media
# topology: lscpu and SMT siblings into $OUT/topology.txt
# selftest: scripts/gpu_selftest.py (GPU vs CPU frame ops, prepared models, determinism)
# gputests: the CI tests that skip without a GPU (frame ops, anchors), here where they run
# bench   : scripts/bench_swap.py at default settings on /tmp/media/faces$FACES_1080p.mp4
# benchenv: the same with experiment switches set for that run only (alternated runs in one call:
#           "bench a 1" "benchenv FFRAY_SHARED_STREAM=1 b 1" "bench c 1" ...)
# detect  : scripts/bench_detect.py (detector stage alone; host vs device output decoding)
# longdet : the 2-minute faceswap (tapered chunk plan) at 16 and 3 chunks in flight: same bytes?
# pair    : the 20 s faceswap at defaults and with experiment switches (VAR=VALUE): byte-identical?
# layouts : the 20 s faceswap at defaults and with these bench_swap flags (e.g. --actors 2
#           --gpu-per-actor 0.5): byte-identical?
# codec   : scripts/bench_codec.py (codec processes alone: passthrough, ring clean/dirty, transcode)
# nvdec   : scripts/bench_nvdec.py (a job's chunks decoded in one process: CPU vs NVDEC on the GPU)
# ceilings: scripts/bench_ceilings.py (decode, parallel libx264, transcode on the first 240 frames
#           and on the whole input, models at batch 1..16, fp32/fp16)
# Results go to $OUT (the bench rows also as $OUT/table.md: scripts/bench_table.py); record them
# in docs/benchmarks.md. Expects .devdata/t1.jpg (carried).
set -uo pipefail
SP=$(python3 -c "import site; print(site.getsitepackages()[0])")
export PYTHONPATH="/tmp/site:$PWD" RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1 FFRAY_HOME=/tmp/ffray-home
export LD_LIBRARY_PATH="$SP/nvidia/cu13/lib:$SP/nvidia/cudnn/lib:${LD_LIBRARY_PATH:-}"
SECONDS_LONG=${SECONDS_LONG:-120}
# swapon INPUT PROC NAME [bench_swap args]: no telemetry, the source beside INPUT, output /tmp/NAME/out.mp4
swapon() {
  local input=$1 proc=$2 name=$3; shift 3
  timeout 300 python3 scripts/bench_swap.py --processor "$proc" --input "$input" \
    --source "$(dirname "$input")/source.png" --model-dir /tmp/cm --workdir "/tmp/$name" --no-telemetry "$@" \
    > "$OUT/$name.json" 2> "$OUT/$name.err"
}
# swap20 PROC NAME [bench_swap args]: the 20 s 6-face input
swap20() { swapon /tmp/media20/faces6_1080p.mp4 "$@"; }
benches=()  # the bench reports of this call, as one markdown table at the end
for phase in "$@"; do
  set -- $phase
  case $1 in
    install)
      t0=$(date +%s)
      # the models need only numpy and onnx (the image's): made while the wheels unpack
      ( export PYTHONPATH="$PWD"; python3 scripts/make_test_models.py /tmp/cm --cost-matched > /dev/null &&
        python3 scripts/make_test_models.py /tmp/cmplain > /dev/null ) > "$OUT/models.log" 2>&1 &
      mkdir -p /tmp/site && cat /tmp/devpack/part-* | xz -d | tar -x -C /tmp/site || exit 1
      echo "unpacked in $(( $(date +%s) - t0 )) s"
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
      python3 -c "import onnxruntime as o, ray, av, cupy; print('ort', o.__version__, o.get_available_providers(), 'ray', ray.__version__, 'av', av.__version__, 'cupy', cupy.__version__)" | tee "$OUT/versions.txt"
      mkdir -p /tmp/media
      for n in 1 6; do
        python3 scripts/bench_media.py /tmp/media --faces $n --seconds "$SECONDS_LONG" --background .devdata/t1.jpg > "$OUT/media$n.log" 2>&1 &
      done
      python3 scripts/bench_media.py /tmp/media20 --faces 6 --seconds 20 --background .devdata/t1.jpg > "$OUT/media20.log" 2>&1 &
      wait; ls -la /tmp/media /tmp/cm | head -20; echo "installed in $(( $(date +%s) - t0 )) s" ;;
    topology)  # the CPUs: SMT siblings, caches, frequency (for reading the CPU-per-frame figures)
      { lscpu; echo; for c in 0 1 8 15; do echo "cpu$c siblings $(cat /sys/devices/system/cpu/cpu$c/topology/thread_siblings_list 2>/dev/null)"; done; } > "$OUT/topology.txt" 2>&1
      grep -E 'Model name|Thread|Core|Socket|L2|L3|MHz' "$OUT/topology.txt"; grep siblings "$OUT/topology.txt" ;;
    gputests)
      timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_frame_ops.py tests/test_anchors.py 2>&1 | tail -8 ;;
    selftest)
      timeout 300 python3 scripts/gpu_selftest.py --models /tmp/cm --background .devdata/t1.jpg --out "$OUT/selftest.json" 2>&1 | tail -40 ;;
    bench|benchenv)  # bench NAME FACES [extra bench_swap args]; benchenv VAR=VALUE[,VAR=VALUE] NAME FACES [extra]
      envs=""; [ "$1" = benchenv ] && { envs=$2; shift; }
      name=$2 faces=$3; shift 3
      ( [ -n "$envs" ] && export $(echo "$envs" | tr ',' ' ')
        timeout 540 python3 scripts/bench_swap.py --processor faceswap --input "/tmp/media/faces${faces}_1080p.mp4" \
          --source /tmp/media/source.png --model-dir /tmp/cm --workdir "/tmp/b-$name" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err" )
      echo "== $name rc=$?"; benches+=("$OUT/$name.json"); python3 -c "import json,sys; d=json.load(open('$OUT/$name.json')); print({k: d.get(k) for k in ('fps_whole_job','fps_processing','fps_steady','steady_s','gpu_util_mean_steady','start_to_first_chunk_s','gpu_util_mean_processing','host_cpu_percent_processing','backend','slots_per_worker','chunks','stage_busy_share','gpu_mem_gib_first_min','gpu_mem_gib_last_min','worker_rss_gib_first_min','worker_rss_gib_last_min','codec_rss_gib_first_min','codec_rss_gib_last_min','core_ms_per_frame_steady','ceiling_transcode_before_after','share_processing','share_steady','encoder_busy_share','cuda_graphs','workers','wall_s','plan_s','startup','assemble_s','after_last_chunk_s','report_s','teardown_wait_s','switches_per_frame','codec_affinity_cpus','worker_affinity_cpus','worker_setup_phases','ceiling_whole_sum_of_rates','ceiling_whole_aggregate','ceiling_whole_parts_fps','share_whole_processing','share_whole_steady','share_whole_processing_aggregate')})" 2>/dev/null || tail -20 "$OUT/$name.err" ;;
    identity)  # identity NAME FACES [extra]
      name=$2 faces=$3; shift 3
      timeout 540 python3 scripts/bench_swap.py --processor identity --input "/tmp/media/faces${faces}_1080p.mp4" \
        --workdir "/tmp/b-$name" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
      echo "== $name rc=$?"; grep -E '"fps_|first_chunk|host_cpu' "$OUT/$name.json" | tr -d '\n' || tail -20 "$OUT/$name.err"; echo ;;
    determinism)  # the same job at two slot counts: identity and faceswap outputs byte-identical
      for proc in identity faceswap; do
        for slots in 16 3; do
          swap20 "$proc" "det-$proc-$slots" --slots "$slots"
        done
        md5sum /tmp/det-$proc-*/out.mp4 | tee -a "$OUT/determinism.txt"
      done ;;
    longdet)  # longdet FACES: the 2-minute input (auto taper) at 16 and 3 chunks in flight: same bytes?
      for slots in 16 3; do
        swapon "/tmp/media/faces${2:-1}_1080p.mp4" faceswap "ld-$slots" --slots "$slots"
        echo "== longdet $slots rc=$? $(python3 -c "import json; d=json.load(open('$OUT/ld-$slots.json')); print(d['fps_processing'], d['chunks'], d['chunk_taper'])" 2>&1 | tail -1)"
      done; md5sum /tmp/ld-16/out.mp4 /tmp/ld-3/out.mp4 | tee -a "$OUT/longdet.txt" ;;
    pair)  # pair VAR=VALUE...: the 20 s 6-face faceswap at defaults and with these switches (same bytes?)
      shift; tag=$(echo "$*" | tr -c 'A-Za-z0-9\n' '_')
      for v in default "$tag"; do
        ( [ "$v" != default ] && export "$@"; swap20 faceswap "pair-$v" )
        echo "== pair $v rc=$? $(python3 -c "import json; d=json.load(open('$OUT/pair-$v.json')); print(d['fps_processing'], d['chunks_worker_decoded'], d.get('cuda_graphs'))" 2>&1 | tail -1)"
      done; md5sum /tmp/pair-default/out.mp4 "/tmp/pair-$tag/out.mp4" | tee -a "$OUT/pair.txt" ;;
    layouts)  # layouts FLAGS...: the 20 s 6-face faceswap at defaults and with these flags (same bytes?)
      shift
      for v in default other; do
        if [ $v = default ]; then swap20 faceswap lay-default; else swap20 faceswap lay-other "$@"; fi
        echo "== layouts $v rc=$? $(python3 -c "import json; d=json.load(open('$OUT/lay-$v.json')); print(d['fps_processing'], d.get('workers'), d.get('slots_per_worker'))" 2>&1 | tail -1)"
      done; md5sum /tmp/lay-default/out.mp4 /tmp/lay-other/out.mp4 | tee -a "$OUT/layouts.txt" ;;
    detect)  # the detector stage alone: phases of a batch, host vs device decoding, 1-4 threads
      python3 -c "import pytest" 2>/dev/null && timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_anchors.py 2>&1 | tail -3
      timeout 300 python3 scripts/bench_detect.py --input /tmp/media/faces${2:-1}_1080p.mp4 --models /tmp/cm \
        --out "$OUT/detect${2:-1}.json" 2>&1 | tail -30 ;;
    codec)  # codec [FACES] [extra bench_codec args]: the codec processes alone vs a plain transcode
      timeout 560 python3 scripts/bench_codec.py "/tmp/media/faces${2:-1}_1080p.mp4" --slots 16 "${@:3}" | tee -a "$OUT/codec.jsonl" ;;
    nvdec)  # nvdec [FACES] [extra bench_nvdec args]: CPU decode vs NVDEC frames kept on the GPU
      timeout 400 python3 scripts/bench_nvdec.py "/tmp/media/faces${2:-1}_1080p.mp4" "${@:3}" | tee -a "$OUT/nvdec.jsonl" ;;
    ceilings)  # ceilings [extra bench_ceilings args, e.g. --streams 16 --threads 1 --no-models]
      shift; models="--models /tmp/cm"
      [ "${1:-}" = "--no-models" ] && { models=""; shift; }
      timeout 560 python3 scripts/bench_ceilings.py --input /tmp/media/faces6_1080p.mp4 $models --out "$OUT/ceilings.json" "$@" 2>&1 | tail -60 ;;
    profile)  # profile NAME FACES [extra]: py-spy (wheel carried in .devdata) on the worker mid-job
      name=$2 faces=$3; shift 3
      rm -rf "/tmp/b-$name"
      [ -x /tmp/pyspy/bin/py-spy ] || python3 -m pip install -q --no-deps --no-index --target /tmp/pyspy .devdata/py_spy-*.whl
      timeout 540 python3 scripts/bench_swap.py --processor faceswap --input "/tmp/media/faces${faces}_1080p.mp4" \
        --source /tmp/media/source.png --model-dir /tmp/cm --workdir "/tmp/b-$name" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err" &
      bpid=$!
      for _ in $(seq 120); do pid=$(pgrep -f "ray::ChunkWorker" | head -1); [ -n "$pid" ] && break; sleep 0.5; done
      for _ in $(seq 120); do ls /tmp/b-$name/data/jobs/*/chunks/*.nut > /dev/null 2>&1 && break; sleep 0.25; done
      child=$(pgrep -f "ffray.engine.codec_child" | head -1)
      # at the same time: the worker, one codec process (native frames too), and top
      /tmp/pyspy/bin/py-spy record -d "${SPY_S:-5}" -r 97 -p "$pid" --format raw -o "$OUT/$name.raw" > "$OUT/$name.spy.log" 2>&1 &
      [ -n "$child" ] && /tmp/pyspy/bin/py-spy record -d "${SPY_S:-5}" -r 97 -p "$child" --native --format raw -o "$OUT/$name.child.raw" > "$OUT/$name.child.log" 2>&1 &
      top -b -n 2 -d 3 -w 250 -c | awk '/^top -/{n++} n==2' | head -45 > "$OUT/$name.top.txt" &
      # per thread over 3 s (stage threads carry native names: ffray-detect-0, codec-encode, ...)
      top -H -b -n 2 -d 3 -w 200 -p "$pid${child:+,$child}" | awk '/^top -/{n++} n==2' | head -60 > "$OUT/$name.threads.txt" &
      sleep "${SPY_S:-5}"
      [ "${GIL:-0}" = 1 ] && /tmp/pyspy/bin/py-spy record -d "${SPY_S:-5}" -r 97 -p "$pid" --gil --format raw -o "$OUT/$name.gil.raw" >> "$OUT/$name.spy.log" 2>&1
      wait $bpid; echo "== $name"; tail -3 "$OUT/$name.spy.log"
      python3 -c "import json; d=json.load(open('$OUT/$name.json')); print({k: d.get(k) for k in ('fps_whole_job','fps_processing','fps_steady','steady_s','gpu_util_mean_steady','host_cpu_percent_processing','stage_busy_share')})" 2>/dev/null || tail -20 "$OUT/$name.err" ;;
  esac
done
if [ ${#benches[@]} -gt 0 ]; then python3 scripts/bench_table.py "${benches[@]}" 2>&1 | tee "$OUT/table.md"; fi
