#!/usr/bin/env bash
# One GPU session on this project's lent machine (the tool library's `device` tool: one call at a time, at most 600 s
# a call, the machine given back ~30 s after a call ends, so calls go back to back; what a call leaves under $OUT
# comes back). From the repository root of the working tree the tool copies there (folders under GPU_SESSION_ROOT,
# default /tmp):
#
#   prepare (here):  bash benchmarks/gpu_session.sh wheels   # .whl/: what the GPU image lacks (recbole, colorlog,
#                                                            # thop, texttable; Python 3.12 wheels)
#                    mkdir -p .gpu && cp -r ../shared/datasets .gpu/datasets   # both ignored (.git/info/exclude)
#   call 1 (carry [".whl", ".gpu"]):
#       TIMING_S=300 GROUPS_ORDER="sasrec hstu" JOBS='...' bash benchmarks/gpu_session.sh start
#         wheels into /tmp/site, the tree to /tmp/repo (datasets in /tmp/shared), the stores seeded with the committed
#         runs, the issue-25 compile part of sprint_overhead.py on the idle GPU (TIMING_S > 0; each of its settings
#         at most CHILD_TIMEOUT_S, 240: its times are kept when the profile after them is cut; IMPLS, default
#         dense,fused, the attentions timed; PROFILE_STEPS, default 10, 0: no profile; TIMING_SET, e.g. "--set
#         train_pin_memory=true", config keys for every variant), the like-for-like epoch times of issue 25
#         (speed.py, Beauty 2 and 6 layers, train_pin_memory: RecBole's loop, train_loss_sync epoch, + SPRINT's
#         CUDA graphs) when
#         EPOCH_TIMING_S > 0 (at most that many seconds), the 0.34B configuration in bf16 (speed.py --big_only: step
#         time, TFLOP/s and its share of the bf16 peak measured in the same process; BIG_MODELS, SPRINT on and w0;
#         BIG_SET, e.g. "--set sprint_every=4", config keys for every row)
#         when BIG_TIMING_S > 0, then
#         `paper_gpu.sh pool $GROUPS_ORDER` detached (POOL, MIN_FREE_GIB, JOBS as there), and beside it, when
#         TUNE="MODEL DATASET[;MODEL DATASET]" is set, `paper_gpu.sh tune MODEL DATASET` for each (TUNE_WORKERS trials
#         at once; TUNE_SPEC, default paper_main, the spec whose cell each search fixes; searches committed under
#         benchmarks/results/tune resume); the call fails (exit 1) if no run is
#         training a minute later, with the logs' last lines
#         START_WITHIN_S=N: the pool starts no run later than N s after it began (paper_gpu.sh START_UNTIL)
#   in practice (twenty-second to twenty-fifth sessions) the machine was still there for the next call in ten of
#   fourteen tries (seven of seven in the twenty-fifth); three times the next call, issued at once, found a fresh one.
#   So start and collect go in one command and each call's runs end inside it:
#       JOBS='...' bash benchmarks/gpu_session.sh start; SECONDS_LEFT=450 bash /tmp/repo/benchmarks/gpu_session.sh collect
#   (searches and pools resume from the committed records: what a call finishes is kept, what it cuts runs again)
#   calls 2, 3, ... on a machine still warm: SECONDS_LEFT=540 bash /tmp/repo/benchmarks/gpu_session.sh collect
#   (a fresh machine has no /tmp/repo, and its start is paid either way: give such a call a self-contained other
#   branch, `if [ -d /tmp/repo ]; then ... collect; else <start; collect of other work>; fi`)
#         copies the stores and the logs to $OUT every 30 s (what is there when a call is cut comes back), then
#         prints where each unfinished run is (its last epoch); returns early once nothing trains and the pool has
#         ended (all its runs done, or held)
#   hold (instead of collect, when the budget left cannot finish the runs not yet started):
#       STOP='regex' SECONDS_LEFT=540 bash /tmp/repo/benchmarks/gpu_session.sh hold
#         the pool starts no more runs (a file pool.hold), the running runs whose log names (pool_GROUP_DATASET_SHARD)
#         match STOP are stopped (those that cannot finish: they only slow the others), then as collect. (Never
#         `pkill -f` a pattern that the call's own command line contains: it kills the call.)
#   last call: SECONDS_LEFT=540 TIMING_S=300 IMPLS=dense PROFILE_STEPS=0 bash /tmp/repo/benchmarks/gpu_session.sh finish
#         collect until no run is training (at most SECONDS_LEFT - TIMING_S - EPOCH_TIMING_S), then the timings
#         of start on the idle GPU: the pool's runs first, the timings in what is left of the budget
#
# Then copy the returned stores over benchmarks/results/<spec>/runs.jsonl (the committed lines are a prefix), unpack
# tune.tgz into benchmarks/results (the searches' records), and render (`benchmarks/paper_gpu.sh render`).
set -u
ROOT=${GPU_SESSION_ROOT:-/tmp}  # where the session's folders go on the GPU machine (tests: a temporary folder)
RESULTS=${RESULTS:-$ROOT/results}
STORES="paper_main paper_depth paper_scaling paper_bert4rec paper_hstu_ffn"
session_env() {  # the variables of a session's python processes on the GPU machine (start and finish)
  export PATH=$ROOT/bin:$PATH PYTHONPATH=$ROOT/site:$ROOT/repo RESULTS PYTHONUNBUFFERED=1
}
timing() {  # issue 25's timings, on an idle GPU (start: before the pool; finish: after it), each if its budget is > 0
  if [ "${TIMING_S:-0}" -gt 0 ]; then
    timeout "$TIMING_S" python benchmarks/sprint_overhead.py --preset issue25 --parts compile --compile "${MODES:-cuda_graph}" \
      --attention_impl "${IMPLS:-dense,fused}" --profile "${PROFILE_STEPS:-10}" --rounds 3 --steps 16 \
      --timeout "${CHILD_TIMEOUT_S:-240}" --json "$RESULTS/overhead_graphs.json" ${TIMING_SET:-} 2>&1 \
      | tee "$RESULTS/logs/sprint_overhead_graphs.log" | grep -v "^| [^|]* | [+-][0-9.]* | [+-][0-9]* |$" | tail -60
    cp "$RESULTS/logs/sprint_overhead_graphs.log" "$RESULTS/overhead_graphs.json" "$OUT/" 2>/dev/null
  fi
  if [ "${EPOCH_TIMING_S:-0}" -gt 0 ]; then  # issue 25's like-for-like epoch table (Beauty, d 256, batch 512, BCE 16)
    timeout "$EPOCH_TIMING_S" bash -c '
      for layers in 2 6; do
        for extra in "--set train_pin_memory=true --set train_loss_sync=step" \
            "--set train_pin_memory=true --set train_loss_sync=epoch" \
            "--set train_pin_memory=true --set train_loss_sync=epoch --set sprint_compile=cuda_graph"; do
          python benchmarks/speed.py --device cuda --dataset amazon-beauty --models SASRecPPSPRINT --modes \
            full_sequence --max_len 50 --n_layers $layers --hidden_size 256 --n_heads 4 --full_batch_size 512 \
            --loss_type BCE --epochs 5 --set num_negatives=16 --set tf32=true $extra
        done
      done' 2>&1 | tee "$RESULTS/logs/epoch_times.log" | grep -E "^[|#]"
    cp "$RESULTS/logs/epoch_times.log" "$OUT/" 2>/dev/null
  fi
  if [ "${BIG_TIMING_S:-0}" -gt 0 ]; then  # issue 25's 0.34B configuration, bf16, SPRINT on and w0, share of the peak
    timeout "$BIG_TIMING_S" python benchmarks/speed.py --device cuda --big_only --big_w0 \
      --big_models "${BIG_MODELS:-SASRecSPRINT,SASRecPPSPRINT:dense,SASRecPPSPRINT:fused}" ${BIG_SET:-} 2>&1 \
      | tee "$RESULTS/logs/speed_big.log" | grep -E "^[|#]|measured"
    cp "$RESULTS/logs/speed_big.log" "$OUT/" 2>/dev/null
  fi
}
session_runs() {  # this session's benchmark runs and weight searches (with their worker processes) training
  pgrep -fc "recbole_sprint[.](benchmark|tune) .*--output_dir[= ]$RESULTS/"
}

case "${1:-}" in
  wheels)
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
      recbole==1.2.1 colorlog==4.7.2 thop texttable
    ;;
  start)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$ROOT/site" \
      .whl/*.whl || exit 1
    rm -rf "$ROOT/repo" && mkdir -p "$ROOT/repo" && cp -r . "$ROOT/repo/" && rm -rf "$ROOT/repo/.gpu/datasets"
    mkdir -p "$ROOT/shared" && rm -rf "$ROOT/shared/datasets" && cp -r .gpu/datasets "$ROOT/shared/datasets"
    # paper_gpu.sh calls `python`; the image has python3 only. A wrapper script, never a link: a link to python3 in a
    # venv loses the venv's packages, and a later write through an old link would overwrite the interpreter
    mkdir -p "$ROOT/bin" && rm -f "$ROOT/bin/python" && printf '#!/bin/sh\nexec python3 "$@"\n' > "$ROOT/bin/python" \
      && chmod +x "$ROOT/bin/python"
    cd "$ROOT/repo" || exit 1  # its ../shared is $ROOT/shared
    session_env
    mkdir -p "$RESULTS/logs"
    for s in $STORES; do
      mkdir -p "$RESULTS/$s"
      [ -f "benchmarks/results/$s/runs.jsonl" ] && cp "benchmarks/results/$s/runs.jsonl" "$RESULTS/$s/runs.jsonl"
    done
    [ -d benchmarks/results/tune ] && cp -r benchmarks/results/tune "$RESULTS/"  # committed searches resume
    nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv
    timeout 120 python -c "import recbole, recbole_sprint, torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)" \
      || exit 1
    timing
    export POOL=${POOL:-10} MIN_FREE_GIB=${MIN_FREE_GIB:-24} PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
    : > "$RESULTS/driver.log"
    if [ -n "${TUNE:-}" ]; then  # weight searches beside the pool: TUNE="MODEL DATASET[;MODEL DATASET...]"
      IFS=';' read -ra searches <<< "$TUNE"
      for search in "${searches[@]}"; do
        echo "$(date +%T) tune $search" >> "$RESULTS/driver.log"
        # shellcheck disable=SC2086  # MODEL DATASET are separate words
        setsid nohup bash benchmarks/paper_gpu.sh tune $search >> "$RESULTS/driver.log" 2>&1 < /dev/null &
      done
    fi
    echo "$(date +%T) pool ${GROUPS_ORDER:-}" >> "$RESULTS/driver.log"
    [ -n "${START_WITHIN_S:-}" ] && export START_UNTIL=$(($(date +%s) + START_WITHIN_S))
    # shellcheck disable=SC2086  # the group names are separate words
    setsid nohup bash benchmarks/paper_gpu.sh pool ${GROUPS_ORDER:-} >> "$RESULTS/driver.log" 2>&1 < /dev/null &
    echo $! > "$RESULTS/pool.pid"
    sleep "${START_CHECK_S:-60}"
    running=$(session_runs)
    echo "$running process(es) training (benchmark runs, weight searches)"; cat "$RESULTS/driver.log"
    if ((running == 0)); then
      for f in "$RESULTS"/logs/pool_*.log; do echo "== $f"; tail -n 3 "$f"; done | head -40
      exit 1
    fi
    ;;
  collect | finish | hold)
    if [ "$1" = hold ]; then
      touch "$RESULTS/pool.hold"
      echo "$(date +%T) hold: the pool starts no more runs" | tee -a "$RESULTS/driver.log"
      for pidfile in "$RESULTS"/logs/pool_*.pid; do
        [ -e "$pidfile" ] || continue
        name=$(basename "$pidfile" .pid)
        if [ -n "${STOP:-}" ] && [[ $name =~ $STOP ]] && kill "$(cat "$pidfile")" 2> /dev/null; then
          echo "$(date +%T) hold: stopped $name" | tee -a "$RESULTS/driver.log"
        fi
      done
    fi
    snap() {
      for s in $STORES; do cp "$RESULTS/$s/runs.jsonl" "$OUT/${s}_runs.jsonl" 2>/dev/null; done
      tar czf "$OUT/logs.tgz" -C "$RESULTS" logs driver.log 2>/dev/null
      # the searches' records (trials.csv, search_settings.json, best_*; trial folders without checkpoints)
      [ -d "$RESULTS/tune" ] && tar czf "$OUT/tune.tgz" --exclude='*.pth' -C "$RESULTS" tune 2>/dev/null
    }
    # finish: as collect, but stops waiting once no run is training, leaving TIMING_S + EPOCH_TIMING_S of the call for
    # the timings on the then idle GPU (skipped, with the runs left alone, if runs are still training at that point).
    # Every mode stops waiting once no run is training and the pool has ended (held or out of runs): nothing more
    # can come (the eighteenth session's hold call idled 6 of its 8.5 min on a machine whose runs had all finished)
    finishing=false reserve=0
    [ "$1" = finish ] && finishing=true reserve=$((${TIMING_S:-0} + ${EPOCH_TIMING_S:-0} + ${BIG_TIMING_S:-0}))
    end=$((SECONDS + ${SECONDS_LEFT:-540} - reserve))
    while ((SECONDS < end)); do
      snap
      if (($(session_runs) == 0)); then
        $finishing && break
        pool_pid=$(cat "$RESULTS/pool.pid" 2> /dev/null)
        [ -n "$pool_pid" ] && ! kill -0 "$pool_pid" 2> /dev/null && { echo "$(date +%T) nothing training, the pool has ended"; break; }
      fi
      sleep "${COLLECT_POLL_S:-30}"
    done
    snap
    nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
    tail -n 5 "$RESULTS/driver.log"; wc -l "$RESULTS"/paper_*/runs.jsonl 2>/dev/null
    running=$(session_runs)
    echo "training now: $running"
    for f in "$RESULTS"/logs/pool_*.log; do  # where each unfinished run is (a run's log ends with its test result)
      case $f in *.oom*.log) continue ;; esac
      grep -q "test result" "$f" || echo "  $(basename "$f" .log): $(grep -o "epoch [0-9]* training" "$f" | tail -n 1)"
    done
    grep -l "Traceback" "$RESULTS"/logs/*.log 2>/dev/null | head
    if $finishing; then
      if ((running == 0)); then
        cd "$ROOT/repo" && session_env && timing
      else
        echo "timings skipped: runs are still training"
      fi
    fi
    ;;
  *)
    echo "usage: $0 wheels|start|collect|hold|finish (see the comments at the top)" >&2
    exit 2
    ;;
esac
