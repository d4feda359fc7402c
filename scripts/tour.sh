#!/usr/bin/env bash
# Runs every command of README.md's "A short tour" top to bottom, as written, with reduced
# steps, and checks that each one exits 0. Not part of CI (and not run by `cargo test`): a
# manual check that the tour works from a fresh clone. About 2½ minutes on two cores with a
# release build (2 min 13 s measured; the end-of-run evaluations keep their full size, so
# the README's main job and the two DPO runs take most of it). Needs bash, git and tar; no
# Python.
#
#   cargo build --release && bash scripts/tour.sh [--keep]
#
# - The tour runs in a scratch copy of the working tree (tracked files and untracked ones
#   git does not ignore) under $TMPDIR, so its runs/ starts empty and the repository's own
#   runs/ is never touched. ../shared/data is reached through a link beside the copy.
# - `manabi` is $MANABI (default: target/release/manabi, or $CARGO_TARGET_DIR/release/manabi,
#   or `manabi` on the PATH); `cargo run --release --` in a command means that binary too.
# - Recipe commands (pretrain, sft, dpo, reward, grpo, ppo, task with --config) get
#   `--set train.steps=2 --set train.eval_every=1 --set train.checkpoint_every=1
#   --set train.eval_batches=1` appended; every other command runs exactly as written.
# - The tour's last lines read runs/pipeline/, which the README's main job writes, so
#   `manabi pipeline` (README, "Two commands") runs first, every stage reduced the same way.
# - Skipped with a message: commands that need a cargo feature (`--features morph`: run with
#   MANABI_TOUR_FEATURES=morph when $MANABI was built with it and dicts/ holds the
#   dictionary), that read ../shared/data when it is absent, that need Python, and those
#   that read a run folder a skipped command would have made.
#
# Prints each command with PASS, FAIL or SKIP, the last lines of every failure's output,
# and the total time; exits 1 when any command failed. The scratch copy is deleted at the
# end unless a command failed or --keep is given.
set -u

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keep=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    *) echo "usage: scripts/tour.sh [--keep]" >&2; exit 2 ;;
  esac
done

MANABI=${MANABI:-}
if [ -z "$MANABI" ]; then
  for c in "$repo/target/release/manabi" "${CARGO_TARGET_DIR:-/nonexistent}/release/manabi" \
      "$(command -v manabi 2>/dev/null)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then MANABI=$c; break; fi
  done
fi
if [ -z "$MANABI" ] || [ ! -x "$MANABI" ]; then
  echo "tour: no manabi binary: run \`cargo build --release\` or set MANABI" >&2
  exit 2
fi
case $MANABI in /*) ;; *) MANABI="$PWD/$MANABI" ;; esac
export MANABI

# The tour's commands: the ```sh blocks under "## A short tour", continuation lines joined,
# comment-only and blank lines dropped.
commands=()
while IFS= read -r line; do commands+=("$line"); done < <(
  awk '
    /^## / { tour = ($0 ~ /^## A short tour/) ; next }
    tour && /^```sh/ { block = 1; next }
    tour && block && /^```/ { block = 0; next }
    tour && block {
      line = $0
      if (cmd != "") { sub(/^[ \t]+/, "", line); cmd = cmd " " line } else cmd = line
      if (cmd ~ /\\$/) { sub(/[ \t]*\\$/, "", cmd); next }
      if (cmd !~ /^[ \t]*(#|$)/) print cmd
      cmd = ""
    }' "$repo/README.md")
if [ ${#commands[@]} -eq 0 ]; then
  echo "tour: found no commands under \"## A short tour\" in README.md" >&2
  exit 2
fi

git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || {
  echo "tour: $repo is not a git checkout (the scratch copy is made from git ls-files)" >&2
  exit 2; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/manabi-tour.XXXXXX")
work="$scratch/repo"
mkdir -p "$work" "$scratch/logs"
(cd "$repo" && git ls-files -z -co --exclude-standard) |
  while IFS= read -r -d '' f; do [ -e "$repo/$f" ] && printf '%s\0' "$f"; done |
  (cd "$repo" && tar --null -T - -cf -) | (cd "$work" && tar -xf -) || {
    echo "tour: could not copy the working tree to $work" >&2; exit 2; }
if [ -d "$repo/../shared" ]; then ln -s "$(cd "$repo/../shared" && pwd)" "$scratch/shared"; fi
if [ -d "$repo/dicts" ] && [ ! -e "$work/dicts" ]; then ln -s "$repo/dicts" "$work/dicts"; fi
have_shared=0
[ -d "$scratch/shared/data" ] && have_shared=1

REDUCE=(--set train.steps=2 --set train.eval_every=1 --set train.checkpoint_every=1
        --set train.eval_batches=1)

# `manabi` inside the tour's commands.
manabi() {
  local recipe=0 a
  case ${1-} in
    pretrain|sft|dpo|reward|grpo|ppo|task)
      for a in "$@"; do [ "$a" = --config ] && recipe=1; done ;;
  esac
  if [ $recipe = 1 ]; then "$MANABI" "$@" "${REDUCE[@]}"; else "$MANABI" "$@"; fi
}

# The recipe a command names with --config, if any.
config_of() {
  local prev="" w
  for w in $1; do
    [ "$prev" = --config ] && { echo "$w"; return; }
    prev=$w
  done
}

# Run folders a command writes: --out DIR, --set run.out=DIR, its recipe's `out`.
outputs_of() {
  local cmd=$1 cfg
  grep -oE -- '(--out |run\.out=)runs/[A-Za-z0-9._-]+' <<<"$cmd" | sed -E 's/^(--out |run\.out=)//'
  cfg=$(config_of "$cmd")
  if [ -n "$cfg" ] && [ -f "$work/$cfg" ] && ! grep -q -- 'run\.out=' <<<"$cmd"; then
    sed -nE 's/^out *= *"([^"]+)".*/\1/p' "$work/$cfg" | head -1
  fi
}

skipped_outs=()
results=()
failed=0
n=0
started=$(date +%s)

run_one() { # label, command text
  local label=$1 cmd=$2 log t0 t1 rc
  n=$((n + 1))
  log="$scratch/logs/$(printf %02d $n).log"
  printf '%s\n' "$cmd" >"$log"
  printf -- '--- [%02d] %s\n' "$n" "$label"
  t0=$(date +%s)
  (cd "$work" && eval "$cmd") >>"$log" 2>&1 </dev/null
  rc=$?
  t1=$(date +%s)
  if [ $rc -eq 0 ]; then
    results+=("PASS  $(printf '%4ds' $((t1 - t0)))  $label")
    echo "PASS ($((t1 - t0)) s)"
  else
    failed=$((failed + 1))
    results+=("FAIL  $(printf '%4ds' $((t1 - t0)))  $label")
    echo "FAIL (exit $rc, $((t1 - t0)) s); the end of $log:"
    tail -n 15 "$log" | sed 's/^/    /'
  fi
}

skip_one() { # label, why, command text
  local o
  n=$((n + 1))
  results+=("SKIP         $1  ($2)")
  printf -- '--- [%02d] %s\nSKIP: %s\n' "$n" "$1" "$2"
  while IFS= read -r o; do [ -n "$o" ] && skipped_outs+=("$o"); done < <(outputs_of "$3")
}

echo "tour: $MANABI, ${#commands[@]} commands, in $work"

# The README's main job first when the tour reads its output.
if printf '%s\n' "${commands[@]}" | grep -q 'runs/pipeline/'; then
  pipeline_set=()
  if [ -f "$work/configs/pipeline/life.toml" ]; then
    # Every stage of the pipeline recipe (a section with a `recipe`), reduced.
    for stage in $(awk '/^\[[a-z_]+\]/ { s = substr($0, 2, length($0) - 2) }
                        /^recipe *=/ { print s }' "$work/configs/pipeline/life.toml"); do
      for kv in "${REDUCE[@]}"; do
        [ "$kv" = --set ] && continue
        pipeline_set+=(--set "$stage.$kv")
      done
    done
  fi
  run_one "manabi pipeline ${pipeline_set[*]} (README, \"Two commands\")" \
    "\"\$MANABI\" pipeline ${pipeline_set[*]}"
fi

for cmd in "${commands[@]}"; do
  why=""
  cfg=$(config_of "$cmd")
  if [[ $cmd =~ ^[[:space:]]*python ]]; then
    why="needs Python"
  elif [[ $cmd =~ --features[[:space:]]+([A-Za-z0-9_,-]+) ]]; then
    for feature in ${BASH_REMATCH[1]//,/ }; do
      [[ ",${MANABI_TOUR_FEATURES-}," == *",$feature,"* ]] ||
        why="needs a build with --features $feature (set MANABI_TOUR_FEATURES=$feature when \$MANABI has it)"
    done
  fi
  if [ -z "$why" ] && [ $have_shared = 0 ] && { [[ $cmd == *../shared/data* ]] ||
      { [ -n "$cfg" ] && grep -q '\.\./shared/data' "$work/$cfg" 2>/dev/null; }; }; then
    why="../shared/data is absent"
  fi
  if [ -z "$why" ]; then
    for o in "${skipped_outs[@]+"${skipped_outs[@]}"}"; do
      if [[ " $cmd " =~ [=[:space:]]$o([/[:space:]]) ]]; then
        why="reads $o, which a skipped command makes"; break
      fi
    done
  fi
  if [ -n "$why" ]; then
    skip_one "$cmd" "$why" "$cmd"
    continue
  fi
  # `cargo run --release [--features F] -- ARGS` is the built binary.
  run="$cmd"
  if [[ $run =~ ^[[:space:]]*cargo[[:space:]]+run[[:space:]].*[[:space:]]--[[:space:]](.*)$ ]]; then
    run="manabi ${BASH_REMATCH[1]}"
  fi
  run_one "$cmd" "$run"
done

elapsed=$(($(date +%s) - started))
echo
echo "=== tour summary ($(printf '%d min %02d s' $((elapsed / 60)) $((elapsed % 60))), $MANABI)"
printf '%s\n' "${results[@]}"
if [ $failed -gt 0 ]; then
  echo "$failed command(s) failed; the scratch copy and logs stay in $scratch"
  exit 1
fi
if [ $keep = 1 ]; then
  echo "all passed; the scratch copy and logs stay in $scratch"
else
  rm -rf "$scratch"
  echo "all passed"
fi
