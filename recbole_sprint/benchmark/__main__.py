"""``python -m recbole_sprint.benchmark SPEC.yaml [--models A,B] [--datasets X,Y] [--shard I/N] [--output_dir DIR]
[--parallel] [--address ADDR] [--rerun_before YYYY-MM-DDTHH:MM:SS] [--done_in DIR[,DIR]] [--debug]``

``--models`` / ``--datasets`` choose which cells of the spec run; a selected cell keeps its run id (the one it has
in the whole grid), so runs stored by a filtered call are skipped by later calls, filtered or not. The tables are
rendered from every stored run of the whole spec.

A wrong input (spec, dataset, config value, a corrupt line of the results store) prints one line,
``error: <message>``, and exits with status 2; ``--debug`` shows the traceback instead. Config values in a spec
are read as data (a string stays a string: it is never ``eval()``ed as RecBole would).
"""

import argparse
import sys

from recbole_sprint.cli import HelpFormatter, models_epilog, plain  # (standard library only: --help is fast)

EPILOG = """shipped specs (recbole_sprint/properties/benchmark/; a spec's runs train with the spec's config over each
model's yaml defaults):
  smoke.yaml                SASRec vs SASRecSPRINT on ml-100k, 2 sizes x 2 seeds: 8 CPU runs, minutes
  paper_main.yaml           the paper's comparison on amazon-beauty and ml-1m-3k (../shared/datasets): GPU
  paper_depth.yaml          depth sweep 2/4/8 layers: GPU
  paper_scaling.yaml        SASRec++ +- SPRINT at sizes XXS-Large on ml-1m-3k, paper_main's protocol: GPU
  paper_bert4rec.yaml       BERT4Rec +- SPRINT, every batch a cloze batch, 200 epochs, no early stopping: GPU
  paper_hstu_ffn.yaml       HSTU with the paper's SwiGLU feed-forward block +- SPRINT, paper_main's protocol: GPU
  paper_amazon-beauty.yaml, paper_ml-1m-3k.yaml   paper sizes XXS-Base, prefix mode: GPU, hundreds of runs
Outputs (default outputs/benchmark/<spec name>/): runs.jsonl (one line per finished run; a rerun skips it),
table.md / .tex / .csv, scaling.csv and plots, and each run's RecBole log under log/ there."""


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_sprint.benchmark", description=plain(__doc__),
                                     epilog=EPILOG + "\n\n" + models_epilog(), formatter_class=HelpFormatter)
    parser.add_argument("spec", help="benchmark spec (YAML), e.g. recbole_sprint/properties/benchmark/smoke.yaml")
    parser.add_argument("--output_dir", default=None,
                        help="results store, tables and plots (default: outputs/benchmark/<spec name>)")
    parser.add_argument("--models", default=None, metavar="A,B",
                        help="run only these model entries: comma-separated labels (the table rows) or model names; "
                             "an entry is selected when its label or its model name is listed, so with "
                             "{name: SASRecSPRINT, label: SASRec} and {name: SASRecSPRINT} in the spec, "
                             "'SASRecSPRINT' selects both entries and 'SASRec' only the first")
    parser.add_argument("--datasets", default=None, metavar="X,Y",
                        help="run only these datasets (comma-separated names)")
    parser.add_argument("--parallel", action="store_true", help="run the grid as Ray tasks on a local Ray")
    parser.add_argument("--address", default=None, help="Ray cluster address (implies --parallel)")
    parser.add_argument("--keep_checkpoints", action="store_true",
                        help="keep each run's best checkpoint under OUTPUT_DIR/saved/<run id> (default: delete)")
    parser.add_argument("--render_only", action="store_true",
                        help="only render tables/plots from the store: every stored run of the whole spec "
                             "(--models / --datasets choose what runs, not what is rendered)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run only the grid cells (after --models / --datasets) at positions I, I+N, I+2N, ... "
                             "(N processes share the store)")
    parser.add_argument("--rerun_before", default=None, metavar="YYYY-MM-DDTHH:MM:SS",
                        help="run the selected cells again whose stored run finished before this time (after a "
                             "code change that alters results; resumable: new records are later)")
    parser.add_argument("--done_in", default=None, metavar="DIR[,DIR]",
                        help="output folders of other specs (e.g. the main table's): a selected cell whose "
                             "identical run (same model class, dataset, seed and config) is stored there is not "
                             "trained again; this spec's tables show only its own store")
    from recbole_sprint.cli import DEBUG_HELP, one_line_data_warnings, report, user_errors  # noqa: E402

    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads every --key=value of sys.argv
    one_line_data_warnings()
    try:
        return _run(args)
    except user_errors() as error:  # a wrong input (spec, data, store, config): one line; --debug: the traceback
        if args.debug:
            raise
        return report(error)


def _run(args):
    from recbole_sprint.benchmark import SpecError, default_output_dir, load_spec
    from recbole_sprint.cli import report
    from recbole_sprint.benchmark.spec import select_cells

    try:
        spec = load_spec(args.spec)
        if args.models is not None or args.datasets is not None:
            select_cells(spec, args.models, args.datasets)  # a name that matches nothing fails before anything runs
        if args.shard is not None:
            from recbole_sprint.benchmark.runner import check_shard

            check_shard(args.shard)
        if args.rerun_before is not None:
            from recbole_sprint.benchmark.runner import check_rerun_before

            check_rerun_before(args.rerun_before)
        done_in = []
        if args.done_in is not None:
            from recbole_sprint.benchmark.runner import check_done_in

            done_in = check_done_in(args.done_in)
    except (SpecError, OSError, ValueError) as error:
        if args.debug:
            raise
        return report(error)
    output_dir = args.output_dir or default_output_dir(spec)
    from recbole_sprint.benchmark.report import render

    if args.render_only:
        from recbole_sprint.benchmark.runner import STORE_NAME
        from recbole_sprint.benchmark.store import ResultStore
        import os

        ids = {cell.run_id for cell in spec.cells()}
        records = [r for r in ResultStore(os.path.join(output_dir, STORE_NAME)).load() if r["run_id"] in ids]
    else:
        from recbole_sprint.benchmark.runner import run_grid

        records, _ = run_grid(spec, output_dir, parallel=args.parallel, address=args.address,
                              keep_checkpoints=args.keep_checkpoints, shard=args.shard, models=args.models,
                              datasets=args.datasets, rerun_before=args.rerun_before,
                              done_in=done_in)
    paths = render(spec, records, output_dir)
    with open(paths["markdown"]) as f:
        print(f.read())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
