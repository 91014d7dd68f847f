#!/usr/bin/env bash
# The GPU check in one command: the GPU-marked tests, then `python -m aunet.bench.gpu` (the 1e19-rung BPE, AU-Net-2
# and AU-Net-3 trained in bf16 with torch.compile at the paper's sequence lengths; cascaded generation timed), and
# the packed data feed: the books of .gpudata/ repeated to 256 MB (said so in the output), the BPE tokenizer and
# the packs of the 1e19 BPE and AU-Net-2 built with every core in a temporary cache (tokenizer seconds, pack MB/s),
# then 30 steps of each of those two models fed by a DataLoader over its pack with 4 and 8 workers (the data wait's
# share of step time, the steps that waited over 5%; target: at most 2% of step time).
#
#   scripts/gpu-check.sh --prepare-data      # here, once: copy a few MB of real text into .gpudata/ (git-ignored)
#   scripts/gpu-check.sh [OUT_DIR [ARGS]]    # on the GPU machine (default OUT_DIR: $OUT, else build/gpu-check);
#                                            # ARGS go to python -m aunet.bench.gpu (e.g. --label run2, --no-feed,
#                                            # --feed-mb 128, --feed-workers 4,8)
#   scripts/gpu-check.sh --cpu [OUT_DIR]     # the same steps on microscopic models on CPU (what `make test` runs;
#                                            # the feed packs 1 MB, 3 steps with 0 and 2 workers)
#   python -m aunet.bench.gpu --record OUT_DIR/gpu-check.json   # afterwards: BENCHMARKS.md and benchmarks/
#
# Uses the machine's own python3 with torch (PYTHON to override) and this checkout's src/ (no install needed).
# Wheels for missing packages, if any, are installed from .whl/ into a temporary folder first. Budget: under
# 8 minutes on one H200, compilation included; the feed adds about a minute of it on a 16-core host (BPE encodes
# about 0.3-0.5 M tokens/s per core: 256 MB in 10-20 s; bytes pack in a few seconds; the loader-fed steps reuse the
# compiled models, about 20 s). Results are written after every part with the seconds elapsed (elapsed_s), so a run
# stopped early keeps what it measured; a failed feed is recorded and the check goes on (exit status 1).
# Log: OUT_DIR/gpu-check.log. Temporary files (the repeated corpus, tokenizer, packs) go to $TMPDIR, not OUT_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DATA_FILE=".gpudata/books.txt"

mode=gpu
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
elif [[ "${1:-}" == "--prepare-data" ]]; then
    src="${AUNET_DATA_DIR:-../shared/data}/corpora/gutenberg_en/books"
    if [[ ! -d "$src" ]]; then
        echo "gpu-check: no books under $src; set AUNET_DATA_DIR to the data directory" >&2
        exit 2
    fi
    mkdir -p .gpudata
    # The first 4 MB of the books, whole books joined by blank lines (a document boundary for the packer).
    "$PYTHON" - "$src" "$DATA_FILE" <<'PY'
import sys
from pathlib import Path
books, out, data = sorted(Path(sys.argv[1]).glob("*.txt")), Path(sys.argv[2]), b""
for book in books:
    data += book.read_bytes() + b"\n\n\n"
    if len(data) >= 4_000_000:
        break
tmp = out.with_suffix(".tmp")
tmp.write_bytes(data)
tmp.replace(out)
print(f"gpu-check: {len(data)} bytes of {len(books)} books' text in {out}")
PY
    exit $?
elif [[ "${1:-}" == "--cpu" ]]; then
    mode=cpu
    shift
fi
out_dir="${1:-${OUT:-build/gpu-check}}"
shift $(( $# > 0 ? 1 : 0 ))
extra=("$@")  # passed on to python -m aunet.bench.gpu (e.g. --label, --steps)
mkdir -p "$out_dir"
log="$out_dir/gpu-check.log"

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/aunet-site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/aunet-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

data_args=()
[[ -f "$DATA_FILE" ]] && data_args=(--data "$DATA_FILE")
# python -m aunet.bench.gpu, started with -c: the packing's spawned processes re-import the parent's main module,
# and this one imports torch and the whole suite (seconds per process, counted in the pack's MB/s); `aunet train`'s
# main module is the small CLI. With -c there is no main module to re-import.
bench='import sys; from aunet.bench.gpu import main; sys.exit(main())'
status=0
{
    echo "== gpu-check ($mode) $(date -u +%FT%TZ) on $(hostname)"
    [[ $mode == gpu ]] && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
    echo "== GPU-marked tests"
    mapfile -t gpu_tests < <(grep -rl --include='test_*.py' "pytest.mark.gpu" tests | sort)
    "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu "${gpu_tests[@]}" || status=1
    echo "== training, packed data feed and generation benchmark"
    if [[ $mode == gpu ]]; then
        "$PYTHON" -c "$bench" --device cuda --new-bytes 128 --out "$out_dir" "${data_args[@]}" "${extra[@]}" \
            || status=1
    else
        "$PYTHON" -c "$bench" --device cpu --micro --micro-batch 2 --steps 2 --warmup 1 --new-bytes 4 \
            --repeats 1 --contexts 256,512 --feed-steps 3 --out "$out_dir" "${data_args[@]}" "${extra[@]}" \
            || status=1
    fi
    echo "== done, status $status"
    exit "$status"
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
