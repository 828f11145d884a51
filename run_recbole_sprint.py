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

# (--help answers before torch and RecBole are imported: recbole_sprint.cli.only_help)
from recbole_sprint.cli import (DEBUG_HELP, HelpFormatter, models_epilog, one_line_data_warnings, plain, pop_debug,
                                report, user_errors)

EPILOG = """config defaults (lowest first): RecBole's overall.yaml, recbole_sprint/properties/overall.yaml, the model's
yamls (RecBole's, then properties/model/<Model>.yaml; SPRINT.yaml for every *SPRINT model), the dataset's yaml;
--config_files, then --key=value override them. The default run (SASRecSPRINT on ml-100k: train_mode
full_sequence, up to 100 epochs, validation every 5, early stopping after 4 validations without improvement)
took 6 minutes on 2 busy CPU cores (75 epochs; README: what each command costs); --epochs=5 trains in under a
minute. Outputs: RecBole's log in ./log/<model>/, TensorBoard events in ./log_tensorboard/, the best checkpoint
in ./saved/ (checkpoint_dir)."""


def build_parser():
    parser = argparse.ArgumentParser(prog="run_recbole_sprint.py", description=plain(__doc__),
                                     epilog=EPILOG + "\n\n" + models_epilog(), formatter_class=HelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="SASRecSPRINT", help="model name (list below)")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="config files, separated by spaces")
    parser.add_argument("--nproc", type=int, default=1, help="number of processes (GPUs) for DDP")
    parser.add_argument("--ip", type=str, default="localhost", help="the ip of the master node")
    parser.add_argument("--port", type=str, default="5678", help="the port of the master node")
    parser.add_argument("--world_size", type=int, default=-1, help="total number of jobs")
    parser.add_argument("--group_offset", type=int, default=0, help="the global rank offset of this group")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return parser


def main(argv=None):
    parser = build_parser()
    argv, debug = pop_debug(sys.argv[1:] if argv is None else list(argv))
    args, _ = parser.parse_known_args(argv)
    one_line_data_warnings()
    from recbole_sprint.quick_start import run  # torch and RecBole: after --help has had its answer

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
