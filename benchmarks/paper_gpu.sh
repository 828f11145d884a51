#!/usr/bin/env bash
# The GPU runs still missing from the paper reproduction (benchmarks/results/README.md, "Not run yet"), one step
# per call, in order of value. Every step resumes: rerunning it skips finished benchmark runs and finished tune
# trials, so a step cut short by a time limit loses only the runs in progress. Run from the repository root,
# with the datasets in ../shared/datasets (see its README) and recbole importable; three processes share the
# GPU (more ran out of memory or time-sliced on the H100).
#
#   benchmarks/paper_gpu.sh tune     # SPRINT weights for SASRecSPRINT on amazon-beauty: 6 trials of the paper's grid
#   benchmarks/paper_gpu.sh tune BERT4RecSPRINT   # its own grid (sprint_bidirectional_grid.hyper: lambda_attn x tau)
#   benchmarks/paper_gpu.sh main     # main-table rows not run yet: BERT4Rec(SPRINT), HSTU, HSTUSPRINT, 2 seeds
#   benchmarks/paper_gpu.sh depth    # amazon-beauty depth sweep: SASRec vs SASRecSPRINT at 2, 4, 8 layers
#   benchmarks/paper_gpu.sh render   # tables and plots from the stores
#   benchmarks/paper_gpu.sh speed    # issue 4's GPU measurements (SPRINT overhead, profiles, 0.34B, equal time)
#
# The tune step searches under paper_main.yaml's protocol (--spec). Its best weights go into the spec's
# SASRecSPRINT entry by hand (best_config.yaml lists them); that changes the entry's run ids, so the main step
# then trains the tuned rows as new runs and the untuned ones stay in the store under their old ids.
set -euo pipefail
SPECS=recbole_sprint/properties/benchmark
RESULTS=benchmarks/results
mkdir -p "$RESULTS/logs"

shards() {  # shards SPEC OUTPUT_DIR LOG_NAME [filters...]: three processes, one shard each
  local spec=$1 out=$2 log=$3
  shift 3
  for i in 0 1 2; do
    python -m recbole_sprint.benchmark "$spec" "$@" --output_dir "$out" --shard="$i/3" > "$RESULTS/logs/${log}_$i.log" 2>&1 &
  done
  wait
}

case "${1:-}" in
  tune)
    model=${2:-SASRecSPRINT}
    grid=properties/hyper/sprint_small_grid.hyper
    [ "$model" = BERT4RecSPRINT ] && grid=properties/hyper/sprint_bidirectional_grid.hyper
    out=$RESULTS/tune/${model}_amazon-beauty
    resume=()
    [ -f "$out/search_settings.json" ] && resume=(--resume)
    python -m recbole_sprint.tune --backend=local --spec="$SPECS/paper_main.yaml" --model="$model" \
      --dataset=amazon-beauty --params_file="$grid" --num_samples=1 --seed=0 \
      --output_dir="$out" "${resume[@]}" 2>&1 | tee -a "$RESULTS/logs/tune_${model}_amazon-beauty.log"
    ;;
  main)
    shards "$SPECS/paper_main.yaml" "$RESULTS/paper_main" main --models BERT4Rec,BERT4RecSPRINT,HSTU,HSTUSPRINT
    ;;
  depth)
    shards "$SPECS/paper_depth.yaml" "$RESULTS/paper_depth" depth --models SASRecSPRINT --datasets amazon-beauty
    ;;
  render)
    python -m recbole_sprint.benchmark "$SPECS/paper_main.yaml" --output_dir "$RESULTS/paper_main" --render_only
    python -m recbole_sprint.benchmark "$SPECS/paper_depth.yaml" --output_dir "$RESULTS/paper_depth" --render_only
    ;;
  speed)  # one process at a time: these are timings
    python benchmarks/sprint_overhead.py --device cuda --max_len 200 --hidden_size 256 --batch_size 128 \
      --dataset ml-1m-3k --rounds 5 --steps 20 2>&1 | tee "$RESULTS/logs/sprint_overhead_h100.log"
    python benchmarks/speed.py --device cuda --max_len 200 --n_layers 8 --hidden_size 256 --n_heads 4 \
      --models SASRecSPRINT,HSTUSPRINT --modes full_sequence --epochs 3 --profile_steps 10 --big \
      2>&1 | tee "$RESULTS/logs/speed_h100_profile.log"
    python benchmarks/equal_time.py --device cuda --budget 120 2>&1 | tee "$RESULTS/logs/equal_time_h100.log"
    ;;
  *)
    echo "usage: $0 tune [MODEL]|main|depth|render|speed (see the comments at the top)" >&2
    exit 2
    ;;
esac
