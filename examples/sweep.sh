#!/usr/bin/env bash
# A sweep from the shell: every cell times every width, one run directory per setting,
# skipping settings that already completed (and resuming any that were interrupted), then
# one table of all runs. Re-run it after a crash or a Ctrl-C: it picks up where it stopped.
#
#   bash examples/sweep.sh                        # the full sweep (a few minutes on a CPU)
#   CELLS="lstm" UNITS="8" EPOCHS=1 SAMPLES=200 RUNS=/tmp/s bash examples/sweep.sh   # tiny
#
# `seqtrain sweep` does the same with seeds, parallel jobs and sharding built in.
set -euo pipefail

config=${CONFIG:-configs/shifted_digit_lstm.yaml}
runs=${RUNS:-runs/shell-sweep}
epochs=${EPOCHS:-10}
samples=${SAMPLES:-10000}
read -ra cells <<< "${CELLS:-simple_rnn lstm gru}"
read -ra units <<< "${UNITS:-32 64}"

run_exists() {  # true when the run directory holds a completed run
  [[ -f "$1/summary.json" ]] && grep -q '"status": "completed"' "$1/summary.json"
}

for cell in "${cells[@]}"; do
  for width in "${units[@]}"; do
    dir="$runs/cell=$cell.units=$width"
    if run_exists "$dir"; then
      echo "skip $dir: completed" >&2
    elif [[ -d "$dir" ]]; then
      seqtrain resume "$dir" --quiet                # interrupted or killed earlier
    else
      seqtrain run "$config" --run-dir "$dir" --quiet \
        --set model.cell="$cell" --set model.units="$width" \
        --set train.epochs="$epochs" --set data.num_samples="$samples"
    fi
  done
done

seqtrain ls "$runs" --sort best_val_loss
