#!/usr/bin/env bash
# The GPU runs still missing from the paper reproduction (benchmarks/results/README.md, "Not run yet"). Every
# step resumes: rerunning it skips finished benchmark runs and finished tune trials, so a step cut short by a time
# limit loses only the runs in progress. Run from the repository root, with the datasets in ../shared/datasets
# (see its README) and recbole importable. RESULTS (default benchmarks/results) is where the stores live.
#
#   benchmarks/paper_gpu.sh tune     # SPRINT weights for SASRecSPRINT on amazon-beauty: 6 trials of the paper's grid
#                                    # under paper_main.yaml's protocol, TUNE_WORKERS (6) trials at once on the GPU
#   benchmarks/paper_gpu.sh tune BERT4RecSPRINT   # its own grid (sprint_bidirectional_grid.hyper: lambda_attn x tau)
#   benchmarks/paper_gpu.sh tuned    # the SASRecSPRINT-tuned rows (amazon-beauty, 2 seeds) with the search's best weights
#   benchmarks/paper_gpu.sh main     # main-table rows not run yet: BERT4Rec(SPRINT), HSTU, HSTUSPRINT, 2 seeds
#   benchmarks/paper_gpu.sh depth    # amazon-beauty depth sweep: SASRec vs SASRecSPRINT at 2, 4, 8 layers
#   benchmarks/paper_gpu.sh queue    # all of the above in order of value, as many processes at once as pay off
#   benchmarks/paper_gpu.sh render   # tables and plots from the stores
#   benchmarks/paper_gpu.sh speed    # issue 4's GPU measurements (SPRINT overhead, profiles, 0.34B, equal time)
#
# The tuned rows: `tuned` writes $RESULTS/paper_main_tuned.yaml, paper_main.yaml plus one entry
# {name: SASRecSPRINT, label: SASRecSPRINT-tuned, config: <the best trial's weights>}, and trains that entry on
# amazon-beauty into the paper_main store. The same entry, added to paper_main.yaml by hand, has the same run ids,
# so the committed spec renders those rows (the weights were searched on amazon-beauty only).
set -euo pipefail
SPECS=recbole_sprint/properties/benchmark
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS/logs"

shards() {  # shards N SPEC OUTPUT_DIR LOG_NAME [filters...]: N processes, one shard each
  local n=$1 spec=$2 out=$3 log=$4
  shift 4
  for ((i = 0; i < n; i++)); do
    python -m recbole_sprint.benchmark "$spec" "$@" --output_dir "$out" --shard="$i/$n" > "$RESULTS/logs/${log}_$i.log" 2>&1 &
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
      --output_dir="$out" --workers="${TUNE_WORKERS:-6}" "${resume[@]}" 2>&1 | tee -a "$RESULTS/logs/tune_${model}_amazon-beauty.log"
    ;;
  tuned)
    best=$RESULTS/tune/SASRecSPRINT_amazon-beauty/best_config.yaml
    [ -f "$best" ] || { echo "no $best yet: run '$0 tune' first" >&2; exit 1; }
    python - "$SPECS/paper_main.yaml" "$best" "$RESULTS/paper_main_tuned.yaml" <<'PY'
import sys, yaml
spec, best, out = sys.argv[1:]
spec_dict, best_dict = yaml.safe_load(open(spec)), yaml.safe_load(open(best))
weights = {k: best_dict[k] for k in ("sprint_attn_weight", "sprint_ffn_weight", "sprint_emb_weight")}
spec_dict["models"].append({"name": "SASRecSPRINT", "label": "SASRecSPRINT-tuned", "config": weights})
yaml.safe_dump(spec_dict, open(out, "w"), sort_keys=False)
print("SASRecSPRINT-tuned:", weights)
PY
    shards 2 "$RESULTS/paper_main_tuned.yaml" "$RESULTS/paper_main" tuned --models SASRecSPRINT-tuned --datasets amazon-beauty
    ;;
  main)
    shards "${MAIN_SHARDS:-4}" "$SPECS/paper_main.yaml" "$RESULTS/paper_main" main --models BERT4Rec,BERT4RecSPRINT,HSTU,HSTUSPRINT
    ;;
  depth)
    shards "${DEPTH_SHARDS:-3}" "$SPECS/paper_depth.yaml" "$RESULTS/paper_depth" depth --models SASRecSPRINT --datasets amazon-beauty
    ;;
  queue)  # ~10 processes on one H100: each small model keeps the GPU mostly idle (host-bound), one CPU thread each
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    ("$0" main || true; "$0" depth) > "$RESULTS/logs/queue_main.log" 2>&1 &
    ("$0" tune || true; "$0" tuned) > "$RESULTS/logs/queue_tune.log" 2>&1 &
    wait
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
    echo "usage: $0 tune [MODEL]|tuned|main|depth|queue|render|speed (see the comments at the top)" >&2
    exit 2
    ;;
esac
