#!/usr/bin/env bash
# The GPU runs of the paper reproduction (benchmarks/results/README.md; what is still missing: "Not run yet"). Every
# step resumes: rerunning it skips finished benchmark runs and finished tune trials, so a step cut short by a time
# limit loses only the runs in progress. Run from the repository root, with the datasets in ../shared/datasets
# (see its README) and recbole importable. RESULTS (default benchmarks/results) is where the stores live.
#
#   benchmarks/paper_gpu.sh tune     # SPRINT weights for SASRecSPRINT on amazon-beauty: 8 trials (sprint_sasrec_grid.hyper:
#                                    # lambda_attn x lambda_ffn x lambda_emb) under paper_main.yaml's protocol,
#                                    # TUNE_WORKERS (6) trials at once on the GPU
#   benchmarks/paper_gpu.sh tune SASRecSPRINT ml-1m-3k   # the same search on another dataset of the spec
#   benchmarks/paper_gpu.sh tune BERT4RecSPRINT   # its own grid (sprint_bidirectional_grid.hyper: lambda_attn x lambda_emb)
#   TUNE_SPEC=paper_bert4rec benchmarks/paper_gpu.sh tune BERT4RecSPRINT ml-1m-3k   # under another spec's cell (here
#                                    # the cloze protocol, 200 epochs); records in tune/<MODEL>_<DATASET>_<TUNE_SPEC>
#                                    # TUNE_EPOCHS=100: at most 100 epochs a trial, records in ..._e100
#   benchmarks/paper_gpu.sh tune HSTUSPRINT       # its own grid (sprint_hstu_grid.hyper: lambda_attn x lambda_emb)
#   benchmarks/paper_gpu.sh tune SASRec++-SPRINT  # the row SASRec++-SPRINT (its optimiser settings), the paper's grid
#                                    # for SASRec++ (sprint_paper_grid.hyper: 4 lambda_attn x 4 lambda_ffn; depth fixed)
#   benchmarks/paper_gpu.sh tuned HSTUSPRINT      # the row <MODEL>-tuned (the search's best weights) on its dataset,
#                                    # its 3 seeds at once, under a copy of paper_main.yaml (benchmarks/tuned_spec.py)
#   benchmarks/paper_gpu.sh pool [GROUP ...]     # the benchmark runs of the groups in pool_jobs, in the order named
#                                    # (default: all, in order of value: the cheap Beauty runs of a group before ml-1m-3k), one process
#                                    # per run, POOL (6) at once: 12 at once ran out of the H100's 80 GB and of the
#                                    # H200's 141 GB (benchmarks/results/README.md); a run starts only when the GPU has
#                                    # MIN_FREE_GIB (24; 0: no check) free, or when none of the pool's runs is left
#                                    # running; runs that die out of GPU memory are tried again with half as many at once
#   JOBS='_ml-1m-3k_(2|5)$' benchmarks/paper_gpu.sh pool sasrecpp   # only the runs whose names (the log names,
#                                    # pool_GROUP_DATASET_SHARD) match this extended regular expression
#   FIRST='_(4|5)$|_1[89]$' benchmarks/paper_gpu.sh pool hstu_depth sasrecpp_scaling   # the runs whose names match
#                                    # this extended regular expression start first (the longest runs: a pool cut
#                                    # short by a time limit loses the short ones, which a later pool trains quickly)
#   START_UNTIL=$(($(date +%s) + 900)) benchmarks/paper_gpu.sh pool depth   # start no run after that time (a run
#                                    # started too late for the budget only slows the others); so does a file
#                                    # $RESULTS/pool.hold, made at any time (gpu_session.sh hold): the running runs
#                                    # go on, the ones not started are named on stderr
#                                    # (the depth groups' processes get --done_in $RESULTS/paper_main when that store
#                                    # exists: a 2-layer depth cell trains exactly as a main-table cell, not twice)
#   RERUN_BEFORE=2026-12-02T00:00:00 DATASETS=ml-1m-3k benchmarks/paper_gpu.sh pool hstu hstu_depth
#                                    # train again the runs of these groups stored before that time (after a fix
#                                    # that changes results; the newer record wins). DATASETS (comma-separated)
#                                    # keeps the groups' runs on these datasets only
#   benchmarks/paper_gpu.sh pool sasrecpp sasrecpp_depth   # the SASRec++ / SASRec++-SPRINT rows (SASRecPPSPRINT, the
#                                    # authors' backbone and optimiser settings) of paper_main and paper_depth
#   benchmarks/paper_gpu.sh pool sasrecpp_scaling   # SASRec++ +- SPRINT at the paper's sizes XXS-Large on ml-1m-3k
#                                    # (paper_scaling.yaml: the scaling plots and power-law fits)
#   benchmarks/paper_gpu.sh pool bert4rec_cloze   # BERT4Rec +- SPRINT with every batch a cloze batch (ft_ratio 0)
#                                    # and 200 epochs without early stopping, as the paper (paper_bert4rec.yaml:
#                                    # paper_main's BERT4Rec rows do not learn)
#   benchmarks/paper_gpu.sh pool hstu_ffn         # HSTU with the paper's SwiGLU feed-forward block +- SPRINT
#                                    # (paper_hstu_ffn.yaml: hstu_ffn true, 3 rows x 2 datasets x 3 seeds)
#   benchmarks/paper_gpu.sh render   # tables and plots from the stores
#   benchmarks/paper_gpu.sh speed    # issue 4's GPU measurements (SPRINT overhead, profiles, 0.34B, equal time)
#
# Tuned rows (none in paper_main.yaml at present: the earlier searches ranked trials without history masking): entries labelled <MODEL>-tuned hold the best weights
# of the searches, per dataset (a second dataset's values go into the entry's dataset_config); a dataset that was
# not searched has no runs of the row. After `tuned`, put its printed entry into paper_main.yaml: it has the same
# run ids, so the stored runs count.
#
# On the GPU machine of this project (benchmarks/results/README.md): run `pool` detached (setsid) with RESULTS
# outside the repository, and name the datasets folder in EVERY call's carry: a call that does not carry it
# removes it there, and the runs still queued then fail to find their data.
set -euo pipefail
SPECS=recbole_sprint/properties/benchmark
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS/logs"

pool_jobs() {  # pool_jobs [GROUP ...]: one line per benchmark run, LOG_NAME SPEC OUTPUT_DIR FILTERS
  # Each group selects N cells (a SPRINT model name also selects its baseline row, the same class with weights
  # 0, and any -tuned entry of that class); together the groups cover every cell of both specs once; N is
  # the group's number of cells, so shard i/N is exactly one cell and no two processes train the same run
  # (tests/benchmark/test_paper_gpu_script.py checks both). A finished run exits at once.
  # Named groups come in the order named (the first named starts first); no names: every group, in the table's order.
  local group spec out models d n i want table reuse
  table=$(cat <<GROUPS
pop paper_main.yaml paper_main Pop amazon-beauty 3
pop paper_main.yaml paper_main Pop ml-1m-3k 3
sasrec paper_main.yaml paper_main SASRecSPRINT amazon-beauty 6
sasrec paper_main.yaml paper_main SASRecSPRINT ml-1m-3k 6
sasrecpp paper_main.yaml paper_main SASRecPPSPRINT amazon-beauty 6
sasrecpp paper_main.yaml paper_main SASRecPPSPRINT ml-1m-3k 6
hstu paper_main.yaml paper_main HSTU,HSTUSPRINT amazon-beauty 6
hstu paper_main.yaml paper_main HSTU,HSTUSPRINT ml-1m-3k 6
bert4rec paper_main.yaml paper_main BERT4RecSPRINT amazon-beauty 6
bert4rec paper_main.yaml paper_main BERT4RecSPRINT ml-1m-3k 6
depth paper_depth.yaml paper_depth SASRecSPRINT amazon-beauty 12
depth paper_depth.yaml paper_depth SASRecSPRINT ml-1m-3k 12
sasrecpp_depth paper_depth.yaml paper_depth SASRecPPSPRINT amazon-beauty 12
sasrecpp_depth paper_depth.yaml paper_depth SASRecPPSPRINT ml-1m-3k 12
hstu_depth paper_depth.yaml paper_depth HSTU,HSTUSPRINT amazon-beauty 12
hstu_depth paper_depth.yaml paper_depth HSTU,HSTUSPRINT ml-1m-3k 12
sasrecpp_scaling paper_scaling.yaml paper_scaling SASRecPPSPRINT ml-1m-3k 20
bert4rec_cloze paper_bert4rec.yaml paper_bert4rec BERT4RecSPRINT amazon-beauty 6
bert4rec_cloze paper_bert4rec.yaml paper_bert4rec BERT4RecSPRINT ml-1m-3k 6
hstu_ffn paper_hstu_ffn.yaml paper_hstu_ffn HSTUSPRINT amazon-beauty 9
hstu_ffn paper_hstu_ffn.yaml paper_hstu_ffn HSTUSPRINT ml-1m-3k 9
GROUPS
)
  for want in "${@:-}"; do
    while read -r group spec out models d n; do
      if [ -n "$want" ] && [ "$group" != "$want" ]; then continue; fi
      if [ -n "${DATASETS:-}" ] && [[ ",$DATASETS," != *",$d,"* ]]; then continue; fi
      reuse=""  # the depth sweep's 2-layer cells are the main table's runs (identical training): not trained twice
      [ "$out" = paper_depth ] && [ -f "$RESULTS/paper_main/runs.jsonl" ] && reuse=" --done_in $RESULTS/paper_main"
      for ((i = 0; i < n; i++)); do
        echo "pool_${group}_${d}_$i $SPECS/$spec $RESULTS/$out --models $models --datasets $d --shard $i/$n$reuse"
      done
    done <<< "$table"
  done
}

wait_for_gpu_memory() {  # until the GPU has MIN_FREE_GIB free (nvidia-smi), or none of this pool's runs is running
  local need=$((${MIN_FREE_GIB:-24} * 1024)) free said=""
  command -v nvidia-smi > /dev/null && ((need > 0)) || return 0
  while free=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits | head -n 1) && ((free < need)) \
      && (($(jobs -rp | wc -l) > 0)); do
    [ -n "$said" ] || echo "waiting for ${MIN_FREE_GIB:-24} GiB of free GPU memory ($((free / 1024)) GiB free)" >&2
    said=1
    sleep "${MEMORY_POLL_S:-10}"
  done
}

starting_closed() {  # pool: no more runs start (a file $RESULTS/pool.hold, or the time START_UNTIL has come)
  [ -e "$RESULTS/pool.hold" ] || { [ -n "${START_UNTIL:-}" ] && (($(date +%s) >= START_UNTIL)); }
}

case "${1:-}" in
  tune)
    model=${2:-SASRecSPRINT}
    dataset=${3:-amazon-beauty}
    case $model in
      BERT4RecSPRINT) grid=properties/hyper/sprint_bidirectional_grid.hyper ;;
      HSTUSPRINT) grid=properties/hyper/sprint_hstu_grid.hyper ;;
      SASRec++-SPRINT) grid=properties/hyper/sprint_paper_grid.hyper ;;  # the paper's 16 (lambda_attn, lambda_ffn)
      SASRecSPRINT) grid=properties/hyper/sprint_sasrec_grid.hyper ;;
      *) grid=properties/hyper/sprint_small_grid.hyper ;;
    esac
    spec=${TUNE_SPEC:-paper_main}  # the spec whose cell is the search's fixed config (paper_bert4rec: the cloze
    out=$RESULTS/tune/${model}_$dataset  # protocol, 200 epochs); a search under another spec has its own folder
    [ "$spec" != paper_main ] && out=${out}_$spec
    epochs=()  # TUNE_EPOCHS=N: each trial trains at most N epochs (--max_epochs), records in <folder>_eN: a shorter
    if [ -n "${TUNE_EPOCHS:-}" ]; then  # search is another search (BERT4Rec's 200-epoch trials outlast a GPU session)
      epochs=(--max_epochs="$TUNE_EPOCHS")
      out=${out}_e$TUNE_EPOCHS
    fi
    resume=()
    [ -f "$out/search_settings.json" ] && resume=(--resume)
    python -m recbole_sprint.tune --backend=local --spec="$SPECS/$spec.yaml" --model="$model" \
      --dataset="$dataset" --params_file="$grid" --num_samples=1 --seed=0 \
      --output_dir="$out" --workers="${TUNE_WORKERS:-6}" "${epochs[@]}" "${resume[@]}" 2>&1 | tee -a "$RESULTS/logs/tune_$(basename "$out").log"
    ;;
  tuned)  # tuned MODEL [DATASET]: the seeds of MODEL-tuned (paper_main.yaml's) at once, one process each (resumes
          # like pool)
    model=${2:?usage: $0 tuned MODEL [DATASET]}
    dataset=${3:-amazon-beauty}
    spec=$SPECS/paper_main_${model}_${dataset}_tuned.yaml  # per dataset: two tuned jobs of one model can run at once
    python benchmarks/tuned_spec.py --spec "$SPECS/paper_main.yaml" --tune_dir "$RESULTS/tune/${model}_$dataset" \
      --out "$spec"
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    n=$(python -c "import sys, yaml; print(len(yaml.safe_load(open(sys.argv[1]))['seeds']))" "$spec")
    for ((i = 0; i < n; i++)); do
      python -m recbole_sprint.benchmark "$spec" --output_dir "$RESULTS/paper_main" --models "$model-tuned" \
        --datasets "$dataset" --shard $i/$n > "$RESULTS/logs/tuned_${model}_${dataset}_$i.log" 2>&1 &
    done
    wait
    ;;
  pool)  # one process per run, POOL at once, in the order of pool_jobs; 2.5-13.5 GiB of GPU memory each
    # A run that dies out of GPU memory (too many processes at once: the ninth session lost 21 of 32 runs so, as
    # each failure freed a slot for another process that failed too) is tried again after the pass, with half as
    # many processes at once, up to 3 passes; its log of the failed try is kept as NAME.oomN.log.
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    rerun=()
    [ -n "${RERUN_BEFORE:-}" ] && rerun=(--rerun_before "$RERUN_BEFORE")
    todo=$(pool_jobs "${@:2}")
    if [ -n "${JOBS:-}" ]; then
      todo=$(while read -r name rest; do if [[ $name =~ $JOBS ]]; then echo "$name $rest"; fi; done <<< "$todo")
      [ -n "$todo" ] || { echo "JOBS='$JOBS' matches none of the runs of the groups ${*:2}" >&2; exit 2; }
    fi
    if [ -n "${FIRST:-}" ]; then  # these first, each part in its order
      todo=$(while read -r name rest; do if [[ $name =~ $FIRST ]]; then echo "$name $rest"; fi; done <<< "$todo"
        while read -r name rest; do if ! [[ $name =~ $FIRST ]]; then echo "$name $rest"; fi; done <<< "$todo")
    fi
    pool=${POOL:-6}
    for pass in 1 2 3; do
      [ -n "$todo" ] || break
      while read -r name spec out filters; do
        while (($(jobs -rp | wc -l) >= pool)); do wait -n || true; done
        starting_closed || wait_for_gpu_memory
        if starting_closed; then
          echo "not started ($RESULTS/pool.hold or START_UNTIL): $name" >&2
          continue
        fi
        # shellcheck disable=SC2086  # the filters are separate words
        python -m recbole_sprint.benchmark "$spec" --output_dir "$out" $filters "${rerun[@]}" \
          > "$RESULTS/logs/$name.log" 2>&1 &
        echo $! > "$RESULTS/logs/$name.pid"  # gpu_session.sh hold STOP=regex stops a run by its name
      done <<< "$todo"
      wait
      again=""
      while read -r name rest; do
        if grep -q -E "CUDA out of memory|CUDA error: out of memory" "$RESULTS/logs/$name.log" 2> /dev/null; then
          mv "$RESULTS/logs/$name.log" "$RESULTS/logs/$name.oom$pass.log"
          again+="$name $rest"$'\n'
        fi
      done <<< "$todo"
      todo=${again%$'\n'}
      if [ -n "$todo" ]; then
        pool=$(((pool + 1) / 2))
        echo "pass $pass: $(wc -l <<< "$todo") run(s) out of GPU memory; again, $pool at once" >&2
      fi
    done
    [ -z "$todo" ] || { echo "still out of GPU memory after 3 passes: $(cut -d' ' -f1 <<< "$todo" | tr '\n' ' ')" >&2; exit 1; }
    ;;
  render)
    python -m recbole_sprint.benchmark "$SPECS/paper_main.yaml" --output_dir "$RESULTS/paper_main" --render_only
    python -m recbole_sprint.benchmark "$SPECS/paper_depth.yaml" --output_dir "$RESULTS/paper_depth" --render_only
    for spec in paper_scaling paper_bert4rec paper_hstu_ffn; do  # once they have runs
      if [ -f "$RESULTS/$spec/runs.jsonl" ]; then
        python -m recbole_sprint.benchmark "$SPECS/$spec.yaml" --output_dir "$RESULTS/$spec" --render_only
      fi
    done
    ;;
  speed)  # one process at a time: these are timings
    python benchmarks/sprint_overhead.py --device cuda --max_len 200 --hidden_size 256 --batch_size 128 \
      --dataset ml-1m-3k --rounds 5 --steps 20 --compile default 2>&1 | tee "$RESULTS/logs/sprint_overhead_h100.log"
    python benchmarks/speed.py --device cuda --max_len 200 --n_layers 8 --hidden_size 256 --n_heads 4 \
      --models SASRecSPRINT,HSTUSPRINT --modes full_sequence --epochs 3 --profile_steps 10 --big \
      2>&1 | tee "$RESULTS/logs/speed_h100_profile.log"
    python benchmarks/equal_time.py --device cuda --budget 120 2>&1 | tee "$RESULTS/logs/equal_time_h100.log"
    ;;
  *)
    echo "usage: $0 tune [MODEL [DATASET]]|tuned MODEL [DATASET]|pool [GROUP ...]|render|speed (see the comments at the top)" >&2
    exit 2
    ;;
esac
