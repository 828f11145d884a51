"""Train and test a recbole_sprint or RecBole model (RecBole's run_recbole.py conventions).

    python run_recbole_sprint.py --model=SASRecSPRINT --dataset=ml-100k
    python run_recbole_sprint.py --model=SASRec --dataset=ml-1m-3k --data_path=../shared/datasets
    python run_recbole_sprint.py --config_files="a.yaml b.yaml" --epochs=5 --sprint_attn_weight=5.0

Any other ``--key=value`` overrides that config key (RecBole reads them from the command line). Its value is
read as a Python literal (``5``, ``0.1``, ``[1, 2]``, ``{'inter': ['user_id']}``, ``None``, ``True``) or else taken as
the plain string; unlike RecBole, which ``eval()``s it, it is never run as code. A misspelled key is an error.

A wrong input (unknown model, dataset or config key, malformed data or config file, ...) prints one line,
``error: <message>``, and exits with status 2; ``--debug`` shows the traceback instead.
"""

import argparse
import sys

from recbole_sprint.cli import DEBUG_HELP, one_line_data_warnings, pop_debug, report, user_errors
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
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    argv, debug = pop_debug(sys.argv[1:] if argv is None else list(argv))
    one_line_data_warnings()
    args, _ = parser.parse_known_args(argv)

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    saved_argv = sys.argv
    sys.argv = sys.argv[:1] + argv  # RecBole's Config reads the --key=value overrides from sys.argv
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
    except user_errors() as error:  # a wrong input: one line (--debug: the traceback)
        if debug:
            raise
        return report(error)
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    sys.exit(main())
