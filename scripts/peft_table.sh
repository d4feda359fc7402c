#!/usr/bin/env bash
# The PEFT comparison of docs/results/fine-tuning.md: the arithmetic SFT recipe with every method, each run
# measured for held-out exact match, trainable parameters, step time and peak memory
# (maximum resident set of the process, from /usr/bin/time). Run from the repository root
# after `manabi pretrain --config configs/pretrain/world-base.toml` (LLaMA: no biases, so
# BitFit stops with its error):
#
#   bash scripts/peft_table.sh [extra --set arguments...]
#
# Prints one markdown row per method; runs land in runs/peft-<method>/ (<TAG>-<method> with
# TAG set). Other tasks: CONFIG=configs/sft/qa-sentence.toml (the recipe), LORA_R (default 8),
# LORA_ALPHA (default 2 × LORA_R: the update scaled by 2, as at r 8 and α 16; α 16 at r 1
# scales it by 16 and diverged), METHODS (a subset), e.g. the answer-style table of
# docs/results/fine-tuning.md:
#
#   CONFIG=configs/sft/qa-sentence.toml LORA_R=1 TAG=runs/peft-sentence bash scripts/peft_table.sh \
#       --set model.path=runs/qa-world/checkpoints/step-0008000 --set train.steps=500 --set train.eval_every=500
set -euo pipefail
BIN=${MANABI:-target/release/manabi}
CONFIG=${CONFIG:-configs/sft/arith.toml}
LORA_R=${LORA_R:-8}
LORA_ALPHA=${LORA_ALPHA:-$((2 * LORA_R))}
TAG=${TAG:-runs/peft}
printf '| method | exact match | EOS | trainable / total | ms / step | peak RSS (MiB) |\n|---|---|---|---|---|---|\n'
for method in ${METHODS:-untuned full lora ia3 prompt prefix houlsby pfeiffer bitfit}; do
  out="$TAG-$method"
  rm -rf "$out"
  extra=() last=()
  # The base model, evaluated the same way: one step at a learning rate of 1e-12, after
  # the caller's settings so that a `--set train.steps=…` there does not train it.
  [ "$method" = untuned ] && last=(--set train.steps=1 --set train.eval_every=1 --set train.warmup_steps=0 --set train.lr=1e-12 --set train.min_lr=0)
  case $method in
    untuned) ;;
    ia3) extra=(--set 'peft.targets=["k_proj","v_proj","down_proj"]' --set 'peft.feedforward=["down_proj"]' --set train.lr=1e-2) ;;
    prompt|prefix) extra=(--set peft.virtual_tokens=8 --set train.lr=1e-2) ;;
    lora) extra=(--set 'peft.targets=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]' --set peft.r=$LORA_R --set peft.alpha=$LORA_ALPHA --set train.lr=3e-3) ;;
    houlsby|pfeiffer) extra=(--set train.lr=3e-3) ;;
    bitfit) extra=(--set train.lr=1e-2) ;;
  esac
  log=$(mktemp)
  if ! /usr/bin/time -v "$BIN" sft --config "$CONFIG" --set "run.out=\"$out\"" \
      --set peft.method="\"${method/untuned/full}\"" --set train.progress=false "${extra[@]}" "$@" "${last[@]}" >"$log" 2>&1; then
    printf '| %s | failed: %s | | | | |\n' "$method" "$(grep -m1 '^error' "$log" || tail -1 "$log")"
    continue
  fi
  em=$(grep -o 'exact match [0-9.]* %' "$log" | grep -o '[0-9.]*' || echo n/a)
  eos=$(grep -o 'EOS [0-9.]* %' "$log" | grep -o '[0-9.]*' || echo n/a)
  params=$(grep -o '[0-9]* trainable of [0-9]*' "$log" | head -1 | sed 's/ trainable of / \/ /')
  steps=$(grep -o '^step [0-9]*' "$log" | grep -o '[0-9]*')
  secs=$(grep -o ', [0-9.]* s$' "$log" | grep -o '[0-9.]*' | head -1)
  ms=$(python3 -c "print(f'{1000*$secs/$steps:.0f}')")
  rss=$(grep 'Maximum resident' "$log" | grep -o '[0-9]*$')
  printf '| %s | %s %% | %s %% | %s | %s | %s |\n' "$method" "$em" "$eos" "$params" "$ms" "$((rss / 1024))"
done
