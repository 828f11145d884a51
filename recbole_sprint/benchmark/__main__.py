"""``python -m recbole_sprint.benchmark SPEC.yaml [--output_dir DIR] [--parallel] [--address ADDR]``"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_sprint.benchmark", description=__doc__)
    parser.add_argument("spec", help="benchmark spec (YAML), e.g. recbole_sprint/properties/benchmark/smoke.yaml")
    parser.add_argument("--output_dir", default=None,
                        help="results store, tables and plots (default: outputs/benchmark/<spec name>)")
    parser.add_argument("--parallel", action="store_true", help="run the grid as Ray tasks on a local Ray")
    parser.add_argument("--address", default=None, help="Ray cluster address (implies --parallel)")
    parser.add_argument("--keep_checkpoints", action="store_true",
                        help="keep each run's best checkpoint under OUTPUT_DIR/saved/<run id> (default: delete)")
    parser.add_argument("--render_only", action="store_true", help="only render tables/plots from the store")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run only the grid cells at positions I, I+N, I+2N, ... (N processes share the store)")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads every --key=value of sys.argv

    from recbole_sprint.benchmark import SpecError, default_output_dir, load_spec, run_benchmark

    try:
        spec = load_spec(args.spec)
        if args.shard is not None:
            from recbole_sprint.benchmark.runner import check_shard

            check_shard(args.shard)
    except (SpecError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output_dir = args.output_dir or default_output_dir(spec)
    if args.render_only:
        from recbole_sprint.benchmark.report import render
        from recbole_sprint.benchmark.runner import STORE_NAME
        from recbole_sprint.benchmark.store import ResultStore
        import os

        ids = {cell.run_id for cell in spec.cells()}
        records = [r for r in ResultStore(os.path.join(output_dir, STORE_NAME)).load() if r["run_id"] in ids]
        paths = render(spec, records, output_dir)
    else:
        paths = run_benchmark(spec, output_dir, parallel=args.parallel, address=args.address,
                              keep_checkpoints=args.keep_checkpoints, shard=args.shard)["paths"]
    with open(paths["markdown"]) as f:
        print(f.read())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
