#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, on the stable
# toolchain without a sanitizer, one job per target, and prints a summary.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# A target that crashes, times out or runs out of memory has its input copied
# to fuzz/regressions/TARGET/ (replayed by tests/fuzz_regressions.rs), and
# the script goes on with the next target; it exits 1 at the end if any
# target failed. Logs go to fuzz/artifacts/logs/TARGET.log. A dictionary in
# fuzz/dict/TARGET.dict, if there is one, is passed with -dict=.
#
# Environment:
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (10)
#   FUZZ_RSS_MB    memory limit in MiB, also the limit of one allocation (2048)
#   FUZZ_ARGS      more libFuzzer options, e.g. "-only_ascii=1"
set -uo pipefail

ALL_TARGETS=(frame_decoder handshake_messages record_opener file_records transfer_receiver responder initiator known_peers sanitizer relay_line)

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    echo "targets: ${ALL_TARGETS[*]}" >&2
    exit 2
}

[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift
if [[ $# -gt 0 ]]; then
    targets=("$@")
    for t in "${targets[@]}"; do
        [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "unknown target: $t" >&2; usage; }
    done
else
    targets=("${ALL_TARGETS[@]}")
fi

timeout_s=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$fuzz_dir" || exit 2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi

echo "== seeding corpora"
python3 "$fuzz_dir/seed.py" || exit 2

echo "== building all targets (stable, -s none)"
cargo fuzz build -s none || exit 2

# Session targets read up to four handshake frames of up to 4100 bytes.
max_len_for() {
    case $1 in
        responder | initiator) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

mkdir -p "$fuzz_dir/artifacts/logs"
summary=()
failed=()

for target in "${targets[@]}"; do
    log="$fuzz_dir/artifacts/logs/$target.log"
    artifacts="$fuzz_dir/artifacts/$target"
    mkdir -p "$artifacts" "$fuzz_dir/corpus/$target"
    marker=$(mktemp)
    dict_args=()
    [[ -f $fuzz_dir/dict/$target.dict ]] && dict_args=(-dict="$fuzz_dir/dict/$target.dict")
    echo "== fuzzing $target for ${seconds}s (log: $log)"
    cargo fuzz run -s none "$target" -- \
        -max_total_time="$seconds" \
        -print_final_stats=1 \
        -timeout="$timeout_s" \
        -rss_limit_mb="$rss_mb" \
        -max_len="$(max_len_for "$target")" \
        "${dict_args[@]}" \
        "${extra_args[@]}" \
        >"$log" 2>&1
    status=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [[ -z $execs ]]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    fi
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    # libFuzzer's corpus (units in memory, after reductions) and the files on
    # disk (a reduced unit is added, its old version is not deleted).
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
    files=$(find "$fuzz_dir/corpus/$target" -type f | wc -l)
    result=ok

    if [[ $status -ne 0 ]]; then
        result="FAILED (exit $status)"
        failed+=("$target")
        mkdir -p "$fuzz_dir/regressions/$target"
        # What the run left in artifacts/: crash-, timeout-, oom-, leak- files.
        found=0
        while IFS= read -r -d '' input; do
            found=1
            kind=$(basename "$input" | cut -d- -f1)
            hash=$(sha1sum "$input" | cut -c1-12)
            # Name it after where it panicked, e.g. crash-src_wire_frame.rs_120-1a2b3c4d5e6f.
            where=$(grep -oE "panicked at [^ ]+:[0-9]+" "$log" | head -n 1 |
                sed -E 's/panicked at //; s/:[0-9]+$//; s/[^A-Za-z0-9.]+/_/g')
            if [[ -z $where ]]; then
                case $kind in
                    timeout) where="slower-than-${timeout_s}s" ;;
                    oom) where="over-${rss_mb}MiB" ;;
                    *) where="deadly-signal" ;;
                esac
            fi
            dest="$fuzz_dir/regressions/$target/$kind-$where-$hash"
            cp "$input" "$dest"
            echo "   saved $dest"
            result="$result, input saved as regressions/$target/$(basename "$dest")"
        done < <(find "$artifacts" -maxdepth 1 -type f -newer "$marker" \
            \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) -print0)
        [[ $found -eq 1 ]] || result="$result, no input found in artifacts/$target (see the log)"
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY: libFuzzer" "$log" | head -n 5 | sed 's/^/   /'
    fi
    rm -f "$marker"

    line="$target: ${execs:-?} execs, ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?} (${files} files): $result"
    echo "   $line"
    summary+=("$line")
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
