"""`deepunlearn` command line: datasets, split sizes, the method registry."""

from __future__ import annotations

import argparse
import json
import sys

from deepunlearn.errors import UserError


def cmd_datasets(args: argparse.Namespace) -> None:
    """List the dataset registry with where each dataset was found."""
    from deepunlearn.data import get_dataset_info, list_datasets, locate

    for name in list_datasets():
        info = get_dataset_info(name)
        where = locate(name, args.data_root)
        print(f"{name:14s} classes={info.num_classes:<4d} size={info.img_size:<4d} "
              f"{'found: ' + str(where) if where else 'missing'}")


def cmd_split(args: argparse.Namespace) -> None:
    """Print the spec A.3 split sizes and checksum as JSON, reading only the files' lengths."""
    from deepunlearn.data import get_dataset_info, make_splits, split_checksum, split_sizes
    from deepunlearn.data.registry import require

    info = get_dataset_info(args.dataset)
    n_train, n_test = info.lengths(require(args.dataset, args.data_root))
    splits = make_splits(n_train, n_test, args.subset)
    print(json.dumps({"dataset": args.dataset, "subset": args.subset, **split_sizes(splits),
                      "sha256": split_checksum(splits)}, indent=2))


def cmd_methods(args: argparse.Namespace) -> None:
    """Print the method registry: id, display name, searched hyperparameters."""
    from deepunlearn.methods import get_method, list_methods

    rows = [(n, get_method(n).display, ", ".join(get_method(n).searched()) or "-") for n in list_methods()]
    if args.markdown:
        print("| id | name | paper | idea | searched hyperparameters |\n|---|---|---|---|---|")
        for n, d, s in rows:
            spec = get_method(n)
            print(f"| `{n}` | {d} | {spec.paper or '-'} | {spec.idea or '-'} | {s} |")
        return
    for n, d, s in rows:
        print(f"{n:10s} {d:10s} {s}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `deepunlearn` command."""
    p = argparse.ArgumentParser(prog="deepunlearn", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("datasets", help="list datasets and where their files were found")
    d.add_argument("--data-root", default=None)
    d.set_defaults(fn=cmd_datasets)
    s = sub.add_parser("split", help="print split sizes and checksum as JSON")
    s.add_argument("dataset")
    s.add_argument("--subset", type=int, default=None)
    s.add_argument("--data-root", default=None)
    s.set_defaults(fn=cmd_split)
    m = sub.add_parser("methods", help="list unlearning methods and their searched hyperparameters")
    m.add_argument("--markdown", action="store_true", help="print the docs/methods.md table")
    m.set_defaults(fn=cmd_methods)
    args = p.parse_args(argv)
    try:
        args.fn(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
