#!/usr/bin/env bash
# The GPU path, measured, in about ten minutes on a machine with a CUDA GPU and torch 2.11.0:
#   1. tests/test_cuda.py (renderer, predictor, service and training on CUDA against the CPU)
#   2. bench.serve with the service on the GPU: p50 at concurrency 1, throughput at 16 and 64,
#      one image per request and 16 per request (batched, max_batch 256)
#   3. bench.render on the GPU (batches 1, 32, 256)
#   4. training iterations/s on the GPU: the shipped view network's recipe and the ELBO's
#   4b. adaptation's seconds per step on the GPU beside the CPU's (bench.adapt_speed)
#   5. the test suite with the service's tests on CUDA (AIRSCENE_TEST_DEVICE=cuda), minus the
#      modules that need tools such a machine lacks (browser, docker-compose, Ray, Triton client)
#      and the two that need the package installed (the console script; a server started in a
#      child process that does not inherit the pack's PYTHONPATH)
# Each step has its own time limit and one failing does not stop the others; the suite gets what
# is left of BUDGET seconds (default 570, the ten minutes less the machine's start). Output goes to
# $OUT/gpu (the device tool's output folder) or bench/results/gpu, one file per step plus
# summary.txt. Packages it lacks come from .gpu-pack/site.tar.xz (bash bench/gpu/pack.sh).
#   bash bench/gpu/run.sh            (or: make gpu-bench)
#   DEVICE=cpu bash bench/gpu/run.sh (a dry run of the same commands on the CPU, without the suite)
set -uo pipefail
cd "$(dirname "$0")/../.."
RESULTS="${OUT:-bench/results}/gpu"
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
START=$SECONDS
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1  # progress bars would fill the logs
if ! "$PY" -c 'import pytorch3d, fastapi, scipy' 2>/dev/null; then
    if [ ! -f .gpu-pack/site.tar.xz ]; then
        echo "pytorch3d or the service's packages are missing and .gpu-pack/site.tar.xz is not here (bash bench/gpu/pack.sh)"
        exit 2
    fi
    SITE="${TMPDIR:-/tmp}/airscene-gpu-site"
    rm -rf "$SITE" && mkdir -p "$SITE" && tar -C "$SITE" --strip-components=1 -xJf .gpu-pack/site.tar.xz
    export PYTHONPATH="$PWD:$SITE"
fi
export PATH="$PATH:$("$PY" -c 'import sys, os; print(os.path.dirname(sys.executable))')"
SUMMARY="$RESULTS/summary.txt"
: > "$SUMMARY"

step() {  # step NAME SECONDS COMMAND...: run it with a limit, log to NAME.txt, note its status
    local name=$1 limit=$2
    shift 2
    local t=$SECONDS
    echo "== $name (limit ${limit} s)" | tee -a "$SUMMARY"
    timeout --kill-after=10 "$limit" "$@" > "$RESULTS/$name.txt" 2>&1
    local rc=$?
    echo "   exit $rc after $((SECONDS - t)) s" | tee -a "$SUMMARY"
    tail -n "${TAIL:-25}" "$RESULTS/$name.txt" | sed 's/^/   /' >> "$SUMMARY"
}

step environment 60 "$PY" -c '
import platform, torch, pytorch3d
print("python", platform.python_version(), "torch", torch.__version__, "pytorch3d", pytorch3d.__version__)
print("cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
if [ "$DEVICE" != cpu ] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "torch sees no CUDA device: nothing to measure" | tee -a "$SUMMARY"
    exit 1
fi

step test_cuda 150 "$PY" -m pytest -p no:cacheprovider -q -rs tests/test_cuda.py
step serve_1_per_request 120 "$PY" -m bench.serve --device $DEVICE --concurrency 1,16,64 --requests 1000 \
    --max-batch 64 --max-wait-ms 1
step serve_16_per_request 120 "$PY" -m bench.serve --device $DEVICE --concurrency 1,16,64 --requests 400 \
    --images 16 --max-batch 256 --max-wait-ms 2
step render 120 "$PY" -m bench.render --device $DEVICE --quick --batches 1,32,256

DATA="${TMPDIR:-/tmp}/airscene-gpu-data"
TRAIN=(--device=$DEVICE --threads=4 --log_interval=10 --eval_interval=1000000 --eval_scenes=50 --export=)
step training 150 bash -c "
set -e
$PY -m renderer.dataset --photo --count 1024 --seed 101 --out $DATA/photo --image-size 80 --chunk 128
$PY -m renderer.dataset --count 1024 --seed 30 --out $DATA/full32 --image-size 32 --chunk 256
$PY -m training.train training/recipes/view_air.py ${TRAIN[*]} --warm_start= --data=$DATA/photo \
    --val_data=$DATA/photo --out_dir=$DATA/run-view --max_iters=100
$PY -m training.train training/recipes/elbo_full32.py ${TRAIN[*]} --data=$DATA/full32 \
    --val_data=$DATA/full32 --out_dir=$DATA/run-elbo --max_iters=40
for run in view elbo; do
    $PY -c \"import csv, sys; rows = list(csv.reader(open(sys.argv[1])))[1:]
(a, b) = rows[0], rows[-1]
print(sys.argv[2], 'iterations/s after the first log row:', round((int(b[0]) - int(a[0])) / (float(b[1]) - float(a[1])), 2))\" \
        $DATA/run-\$run/log.csv \$run
done"

step adapt_speed 90 "$PY" -m bench.adapt_speed --device $DEVICE --steps 60 --cpu-steps 8 --threads 4

LEFT=$((${BUDGET:-570} - (SECONDS - START)))
if [ "$DEVICE" = cpu ]; then
    echo "== suite: skipped in a CPU dry run (make test runs it)" | tee -a "$SUMMARY"
elif [ "$LEFT" -gt 60 ]; then
    TAIL=15 step suite "$LEFT" env AIRSCENE_TEST_DEVICE=cuda "$PY" -m pytest -p no:cacheprovider -q --maxfail=20 \
        --ignore=tests/test_api_page.py --ignore=tests/test_api_container.py --ignore=tests/test_oip.py \
        --ignore=tests/test_ray_render.py --ignore=tests/test_ray_serve.py \
        --deselect tests/test_api_e2e.py::test_demo_page_shows_the_right_number_of_objects \
        --deselect tests/test_api_cli.py::test_console_script_is_installed_and_documents_its_commands \
        --deselect tests/test_api_cli.py::test_airscene_serve_starts_the_service tests
else
    echo "== suite: skipped, ${LEFT} s left of ${BUDGET:-570}" | tee -a "$SUMMARY"
fi
echo "total $((SECONDS - START)) s" | tee -a "$SUMMARY"
