#!/bin/bash
# The GPU runs of docs/model.md ("Runs on a GPU"), one after another, on one CUDA machine with
# the project installed (`pip install -e '.[trainer]'`). Each model lands in $RUNS/<name>/;
# evaluate them afterwards on the test split with `wardrobe evaluate ... --split test`.
#
#   bash bench/gpu_recipes.sh ../shared/data/clothing [runs/gpu]
set -u
DATA=$1; RUNS=${2:-runs/gpu}; mkdir -p "$RUNS"
WARDROBE=${WARDROBE:-wardrobe}
LITE2="--set architecture=efficientnet-lite2 --set input_size=260 --set resize_size=298 --set split_block=15"
CUDA="--set device=cuda --set workers=14 --set threads=16"
train() {  # train NAME ARGS...: one model version, its log beside it, its wall time printed
  local name=$1; shift; local start=$(date +%s)
  $WARDROBE train --data "$DATA" --split-file models/split.json --out "$RUNS" --version "$name" "$@" \
    > "$RUNS/$name.log" 2>&1
  echo "$name: exit $? in $(( $(date +%s) - start )) s"
}
train gpu-default $CUDA                              # the CPU recipe, on the GPU
train gpu-full40 --recipe gpu                        # the whole network, 40 epochs
train gpu-full40-cutmix --recipe gpu --set mix=cutmix
train lite2-cached $LITE2 $CUDA                      # EfficientNet-Lite2, the CPU recipe's cut
train lite2-full30 --recipe gpu $LITE2 --set epochs=30
