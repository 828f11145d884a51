"""Train and test a recbole_sprint or RecBole model (RecBole's run_recbole.py conventions).

    python run_recbole_sprint.py --model=SASRecSPRINT --dataset=ml-100k
    python run_recbole_sprint.py --model=SASRec --dataset=ml-1m-3k --data_path=../shared/datasets
    python run_recbole_sprint.py --config_files="a.yaml b.yaml" --epochs=5 --sprint_attn_weight=5.0

Any other ``--key=value`` overrides that config key (RecBole reads them from the command line).
"""

import argparse
import sys

from recbole_sprint.data import DatasetUnavailableError
from recbole_sprint.quick_start import run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="SASRecSPRINT", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="config files, separated by spaces")
    parser.add_argument("--nproc", type=int, default=1, help="number of processes (GPUs) for DDP")
    parser.add_argument("--ip", type=str, default="localhost", help="the ip of the master node")
    parser.add_argument("--port", type=str, default="5678", help="the port of the master node")
    parser.add_argument("--world_size", type=int, default=-1, help="total number of jobs")
    parser.add_argument("--group_offset", type=int, default=0, help="the global rank offset of this group")
    args, _ = parser.parse_known_args(argv)

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        run(
            args.model,
            args.dataset,
            config_file_list=config_file_list,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except DatasetUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
