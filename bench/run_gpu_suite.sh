#!/usr/bin/env bash
# Issue 6's GPU figures in one bounded run: RVM precision x CUDA graphs, concurrent
# 720p30 sessions with and without batching, and file matting. JSON and logs go to OUTDIR.
#   bench/run_gpu_suite.sh OUTDIR
set -u
out=${1:?usage: bench/run_gpu_suite.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

run() {  # name, time limit (s), script and arguments
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s) $(date +%T)"
    timeout "$limit" python3 "$@" >"$out/$name.json" 2>"$out/$name.log"
    echo "rc=$? $name $(date +%T)"
    tail -n 4 "$out/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
    --format=csv >"$out/gpu.txt" 2>&1
nproc >>"$out/gpu.txt"
run cuda 200 bench/bench_cuda.py --frames 200 --warmup 20
run batching 150 bench/bench_batching.py --device cuda --size 1280x720 --ratio 0.375 --pace-fps 30 \
    --budget-ms 100 --sessions 1,4,8,16,24,32,48 --seconds 5 --warmup-seconds 1
run file 120 bench/bench_file.py --device cuda --frames 200
