#!/usr/bin/env bash
# The accelerator figures in one command, one JSON (default benchmarks/results/gpu_suite.json):
#   SSD300 train step, float32 and bfloat16, batch 32 and 64  (bench_train --measure=step)
#   SSD300 inference with NMS (forward + decode_detections), batch 64  (bench_model, "detect")
#   SSD512 train step, bfloat16, batch 32  (bench_train --measure=step)
#   the input pipeline on VOC-sized JPEGs: examples/s, and per CPU core  (bench_pipeline)
#   the photometric distortion the train step applies, 300 px, batch 64  (bench_photometric)
# The train steps are timed in 5 blocks, detect in its separate calls: the summary has the
# blocks' (calls') median [range] beside the rate (a spread within each run, no extra compile).
# Each part runs in its own process (its own compile, its own peak memory) under a time limit;
# a part that fails is recorded as failed and the rest still run, and the JSON is rewritten after
# each part (a run cut short keeps what finished), with each part's wall time. About 8 minutes
# on one H200, mostly process starts and compiles. Usage:
#   bash benchmarks/gpu_suite.sh [OUT.json]
# SUITE_MODELS="ssd_tiny ssd_tiny" SUITE_STEPS=2 bash benchmarks/gpu_suite.sh /tmp/smoke.json
# runs the same parts with the small model in both roles (a smoke test of the suite on a CPU).
# The parts are named by role (ssd300_*, ssd512_*) whatever SUITE_MODELS says.
# SUITE_PYTHON=python3 runs them with an interpreter that already has the stack (e.g. a GPU
# image's Python with JAX's CUDA plugin, where nothing can be installed) instead of ./.venv.
# SUITE_HLO_DIR=DIR also writes the optimized HLO of every train step and of detect there (the
# cuDNN calls and algorithms the autotuner chose: what explains a figure once the GPU is gone).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${SUITE_PYTHON:-$(bash "$root/experiments/ensure_venv.sh")}"
cd "$root"
out="${1:-benchmarks/results/gpu_suite.json}"
read -r model300 model512 <<< "${SUITE_MODELS:-ssd300_vgg16 ssd512_vgg16}"
steps="${SUITE_STEPS:-20}"
limit="${SUITE_PART_TIMEOUT_S:-150}"
hlo=(${SUITE_HLO_DIR:+"--hlo_dir=$SUITE_HLO_DIR"})
backend="$("$python" -c 'import jax; print(jax.default_backend())' 2>/dev/null)"
if [[ "$backend" == "cpu" ]] && command -v nvidia-smi > /dev/null; then
  echo "gpu_suite: this host has an NVIDIA GPU but JAX runs on the CPU: install JAX's CUDA" \
       "plugin into .venv (e.g. .venv/bin/pip install 'jax[cuda12]==<the pinned jax>')" >&2
fi
parts="$(mktemp -d)"
trap 'rm -rf "$parts"' EXIT

combine() {  # the parts so far -> $out, rewritten after each part so a run cut short keeps them
  "$python" - "$parts" "$out" "$@" <<'EOF'
import json, os, sys, time
parts, out, *show = sys.argv[1:]
runs, seconds = {}, {}
for name in sorted(os.listdir(parts)):
  with open(os.path.join(parts, name)) as f:
    if name.endswith(".json"):
      runs[name[:-len(".json")]] = json.load(f)
    else:  # NAME.seconds: the part's wall time, its process start and compiles included
      seconds[name[:-len(".seconds")]] = float(f.read())
summary = {}
for name, run in runs.items():
  if "failed" in run:
    summary[name] = "failed"
  elif "_train_" in name:
    row = run["results"][0]  # the rate over all timed steps, and its blocks' median [range]
    summary[name] = {"step_images_per_s": row["step_images_per_s"],
                     "step_images_per_s_blocks": row["step_images_per_s_blocks"]}
  elif "_detect_" in name:
    row = run["results"][0]  # the median over the timed calls, and their median [range]
    summary[name] = {"detect_images_per_s": row["detect_images_per_s"],
                     "detect_images_per_s_calls": row["detect_images_per_s_calls"]}
  elif name == "photometric_b64":
    summary[name] = {"distort_images_per_s": run["results"][0]["distort"]["images_per_s"]}
  elif name == "pipeline_voc":
    case = run["pipeline"][0]
    summary[name] = {"examples_per_s": case["examples_per_s"], "cores": run["machine"]["cores"],
                     "examples_per_s_per_core": case["examples_per_s_per_core"]}
  if name in seconds and isinstance(summary[name], dict):
    summary[name]["part_s"] = seconds[name]
# The machine as the parts recorded it (this process does not start a JAX backend).
machine = next((run["machine"] for run in runs.values() if "machine" in run), None)
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out + ".tmp", "w") as f:  # then renamed: a run killed while writing keeps the last one
  json.dump({"machine": machine, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
             "benchmark": "gpu_suite", "summary": summary, "parts": runs}, f, indent=2)
os.replace(out + ".tmp", out)
if show:
  print(json.dumps(summary, indent=2))
EOF
}

part() {  # part NAME MODULE FLAGS...: one benchmark process, its JSON in $parts/NAME.json
  local name="$1" module="$2" start="$SECONDS"
  shift 2
  echo "gpu_suite: $name" >&2
  if ! timeout "$limit" "$python" -m "$module" "$@" --out="$parts/$name.json" >&2; then
    echo "{\"failed\": \"$module $* (exit or timeout after ${limit} s)\"}" > "$parts/$name.json"
  fi
  echo "$((SECONDS - start))" > "$parts/$name.seconds"
  combine > /dev/null
}

for dtype in float32 bfloat16; do
  for batch in 32 64; do
    part "ssd300_train_${dtype}_b${batch}" benchmarks.bench_train --models="$model300" \
        --batch="$batch" --dtype="$dtype" --measure=step --steps="$steps" --warmup_steps=3 \
        "${hlo[@]}"
  done
done
part ssd300_detect_b64 benchmarks.bench_model --models="$model300" --batch=64 \
    --functions=forward --functions=detect --iters="$steps" "${hlo[@]}"
part ssd512_train_bfloat16_b32 benchmarks.bench_train --models="$model512" --batch=32 \
    --dtype=bfloat16 --measure=step --steps="$steps" --warmup_steps=3 "${hlo[@]}"
part photometric_b64 benchmarks.bench_photometric --sizes=300 --batch=64 --iters="$steps"
part pipeline_voc benchmarks.bench_pipeline --cases=voc --images=200 --train_models= \
    --batches="$steps" --warmup_batches=5
combine --print
