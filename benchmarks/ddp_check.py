"""Check RecBole's multi-process (DDP) launch with a plugin model: train, test, then evaluate the checkpoint
the run wrote in one plain process and compare the test metrics (they must be equal: the processes evaluate
every user, compat shim 9).

    python benchmarks/ddp_check.py                             # 2 processes; CPU + gloo without CUDA
    python benchmarks/ddp_check.py --nproc 1 --world_size 1    # RecBole's CUDA/NCCL path on one GPU
    python benchmarks/ddp_check.py --nproc 2                   # 2 GPUs with NCCL (CUDA_VISIBLE_DEVICES / gpu_id)

Prints a table last: the DDP run's test metrics, the single-process ones, and whether they are equal.
"""

import argparse
import glob
import os
import sys
import tempfile
import time

from recbole_sprint.quick_start import load_data_and_model, run
from recbole_sprint.utils import get_trainer

METRICS = ["Recall", "NDCG", "TailCoverage", "SpectralCollapse"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="SASRecSPRINT")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--world_size", type=int, default=-1)
    parser.add_argument("--gpu_id", default="0", help="RecBole's gpu_id, e.g. '0,1' for --nproc 2 on GPUs")
    parser.add_argument("--port", default="29533")
    parser.add_argument("--epochs", type=int, default=2)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = tempfile.mkdtemp(prefix="ddp_check_")
    config = {
        "epochs": args.epochs, "eval_step": 1, "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 128,
        "MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256, "train_mode": "full_sequence", "loss_type": "BCE",
        "num_negatives": 16, "train_neg_sample_args": None, "metrics": METRICS, "topk": [10],
        "valid_metric": "NDCG@10", "show_progress": False, "log_flops": False, "gpu_id": args.gpu_id,
        "checkpoint_dir": os.path.join(out, "saved"), "state": "INFO",
    }
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    start = time.time()
    result = run(
        args.model, args.dataset, config_dict=config, nproc=args.nproc, world_size=args.world_size, port=args.port
    )
    seconds = time.time() - start
    (checkpoint,) = glob.glob(os.path.join(out, "saved", "*.pth"))
    loaded, model, _, train_data, _, test_data = load_data_and_model(checkpoint)
    trainer = get_trainer(loaded["MODEL_TYPE"], loaded["model"])(loaded, model)
    trainer.eval_collector.data_collect(train_data)
    single = {key: float(value) for key, value in trainer.evaluate(test_data, load_best_model=False).items()}
    ddp = {key: float(value) for key, value in result["test_result"].items()}

    print(f"\n# {args.model} on {args.dataset}: nproc {args.nproc}, world size {args.world_size}, "
          f"{seconds:.1f} s; one process on the checkpoint: {loaded['device']}")
    print("| metric | DDP run | one process | equal |\n|---|---|---|---|")
    for key in ddp:
        print(f"| {key} | {ddp[key]} | {single.get(key)} | {ddp[key] == single.get(key)} |")
    return 0 if ddp == single else 1


if __name__ == "__main__":
    sys.exit(main())
