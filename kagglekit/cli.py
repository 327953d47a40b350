"""The ``kagglekit`` command: it parses arguments and calls the library, nothing more.

    kagglekit segment        run the segmentation pipeline of a config on an input folder (--check: validate only)
    kagglekit classify       run the classification pipeline of a config on an input folder (--check: validate only)
    kagglekit train          train every fold of a training TOML and write the kernel's model folder
    kagglekit blend          fit blend weights or a stacker on out-of-fold tables, blend the test tables
    kagglekit run <job>      run a per-slide job (bags, predictions, tiles) over slides, here or on Ray, resumable
    kagglekit demo [name]    build mini-competitions, train on CPU, run the notebook, one table of results
    kagglekit wheels build   build kagglekit's wheel and download the wheels the Kaggle image lacks
    kagglekit wheels check   prove offline that the wheel folder installs for the target
    kagglekit kernel check   validate kernel-metadata.json (refuses internet on or missing)
    kagglekit bundle         write dist/kaggle/ (wheel dataset, model dataset, kernel folder)
    kagglekit push           upload the bundle with the kaggle CLI, or print the commands

Each subcommand is a ``_add_<name>(subparsers)`` function that registers a parser (with an example in
its help) and its handler, so a new one is one more function in ``_COMMANDS``. Exit codes: 0 done
(for a pipeline: something was predicted), 3 a valid submission of fallback rows only (``--strict``:
any fallback row), 1 an error (printed as ``kagglekit: error: ...``, the traceback only with ``-v``),
2 a usage error. Logging goes to stderr: INFO by default, ``-v`` DEBUG, ``-q`` warnings only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback

from kagglekit.errors import InvalidArgumentError, KagglekitError


def _parser(sub, name: str, help: str, example: str, description: str | None = None):
    """A subcommand parser whose ``--help`` ends with an example."""
    return sub.add_parser(name, help=help, description=description or help, epilog=f"example:\n  {example}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _target(args):
    """The target from --local / --python-version / --platform, defaulting to the Kaggle image's."""
    from dataclasses import replace

    from kagglekit.delivery.wheels import Target, kaggle_image

    image = kaggle_image()
    if args.local:
        if args.python_version or args.platform:
            raise InvalidArgumentError("--local targets this interpreter; drop --python-version / --platform")
        return image, Target.local()
    target = image.target
    if args.python_version:
        target = replace(target, python_version=args.python_version, abi=None)
    if args.platform:
        target = replace(target, platforms=tuple(args.platform))
    return image, target


def _add_target_options(parser) -> None:
    group = parser.add_argument_group("target (default: the Kaggle image, see kagglekit/kaggle/kaggle_image.toml)")
    group.add_argument("--python-version", help="target Python, e.g. 3.12")
    group.add_argument("--platform", action="append", help="target platform tag (repeatable), e.g. manylinux_2_17_x86_64")
    group.add_argument("--local", action="store_true", help="target this interpreter and machine instead")
    group.add_argument("--isolated", action="store_true", help="run pip --isolated (ignore PIP_* variables)")


def _wheels_build(args) -> int:
    from kagglekit.delivery.wheels import build_wheels

    image, target = _target(args)
    wheels = build_wheels(args.dest, project=args.project, requirements=args.requirement, image=image,
                          target=target, find_links=args.find_links or (), index_url=args.index_url,
                          no_index=args.no_index, isolated=args.isolated, dataset_id=args.dataset_id,
                          extras=args.extra or ())
    for w in wheels:
        print(w)
    print(f"{len(wheels)} wheels in {args.dest} for {target.describe()}")
    return 0


def _wheels_check(args) -> int:
    from kagglekit.delivery.wheels import check_wheels

    image, target = _target(args)
    found = check_wheels(args.folder, requirements=args.requirement, image=image, target=target,
                         isolated=args.isolated, extras=args.extra or ())
    print("\n".join(found))
    print(f"ok: {args.folder} installs offline for {target.describe()} ({len(found)} wheels)")
    return 0


def _add_wheels(sub) -> None:
    wheels = _parser(sub, "wheels", "the offline wheel dataset: build it, check that it installs offline",
                     "kagglekit wheels build --dest wheels --dataset-id you/kagglekit-wheels").add_subparsers(
        dest="action", required=True, metavar="action")
    build = _parser(wheels, "build", "build kagglekit's wheel and download the missing requirements",
                    "kagglekit wheels build --dest wheels --dataset-id you/kagglekit-wheels")
    build.add_argument("--dest", default="wheels", help="wheel folder (default: wheels)")
    build.add_argument("--project", default=".", help="source folder of kagglekit (default: .)")
    build.add_argument("--requirement", action="append",
                       help="requirement to download (repeatable; default: `missing` in kaggle_image.toml)")
    build.add_argument("--find-links", action="append", help="extra folder or URL of distributions (repeatable)")
    build.add_argument("--index-url", help="package index to download from")
    build.add_argument("--no-index", action="store_true", help="use only --find-links")
    build.add_argument("--dataset-id", help="id for dataset-metadata.json, e.g. you/kagglekit-wheels")
    build.add_argument("--extra", action="append", help="add an optional group of wheels (repeatable), e.g. ray")
    _add_target_options(build)
    build.set_defaults(handler=_wheels_build)
    check = _parser(wheels, "check", "prove the wheel folder installs offline for the target",
                    "kagglekit wheels check wheels --python-version 3.12")
    check.add_argument("folder", nargs="?", default="wheels", help="wheel folder (default: wheels)")
    check.add_argument("--requirement", action="append",
                       help="requirement that must resolve (repeatable; default: kagglekit + `missing`)")
    check.add_argument("--extra", action="append", help="the optional groups the folder must also hold, e.g. ray")
    _add_target_options(check)
    check.set_defaults(handler=_wheels_check)


def _kernel_check(args) -> int:
    from kagglekit.delivery.kernel import check_kernel_metadata

    meta = check_kernel_metadata(args.path)
    print(f"ok: {args.path} ({meta.get('id')}, {meta['code_file']}, internet off)")
    return 0


def _add_kernel(sub) -> None:
    kernel = _parser(sub, "kernel", "kernel-metadata.json: validate it before a push",
                     "kagglekit kernel check kernel-metadata.json").add_subparsers(dest="action", required=True, metavar="action")
    check = _parser(kernel, "check", "validate kernel-metadata.json as the kaggle CLI does, internet off",
                    "kagglekit kernel check kernel-metadata.json")
    check.add_argument("path", nargs="?", default="kernel-metadata.json")
    check.set_defaults(handler=_kernel_check)


def _bundle(args) -> int:
    from kagglekit.delivery.bundle import bundle

    result = bundle(args.out, models=args.models, kernel_metadata=args.kernel_metadata, wheels=args.wheels,
                    owner=args.owner, link=not args.copy)
    for folder in (result.wheels, result.models, result.kernel):
        print(folder)
    print(f"bundle written to {result.root}; upload it with `kagglekit push` (add --create the first time)")
    return 0


def _add_bundle(sub) -> None:
    parser = _parser(sub, "bundle", "write dist/kaggle/: wheel dataset, model dataset, kernel folder",
                     "kagglekit bundle --models models/ --owner you")
    parser.add_argument("--models", required=True, help="folder of checkpoints and their configs")
    parser.add_argument("--out", default="dist/kaggle", help="bundle folder (default: dist/kaggle)")
    parser.add_argument("--kernel-metadata", default="kernel-metadata.json")
    parser.add_argument("--wheels", default="wheels", help="wheel folder (default: wheels)")
    parser.add_argument("--owner", help="your Kaggle user name, replacing the placeholder owner in every id")
    parser.add_argument("--copy", action="store_true", help="copy model files instead of hard-linking them")
    parser.set_defaults(handler=_bundle)


def _push(args) -> int:
    from kagglekit.delivery.bundle import push

    push(args.bundle, create=args.create, message=args.message, dry_run=args.dry_run)
    return 0


def _add_push(sub) -> None:
    parser = _parser(sub, "push", "upload the bundle with the kaggle CLI (or print the commands)",
                     "kagglekit push dist/kaggle --create --dry-run")
    parser.add_argument("bundle", nargs="?", default="dist/kaggle")
    parser.add_argument("--create", action="store_true", help="first upload: `datasets create` instead of `version`")
    parser.add_argument("--message", default="kagglekit bundle", help="dataset version message")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    parser.set_defaults(handler=_push)


def _demo(args) -> int:
    from kagglekit.demo.suite import run_demos

    run_demos(args.names, args.out, steps=args.steps, seed=args.seed, notebook=args.notebook, train=args.train,
              test=args.test, folds=args.folds, seeds=args.seeds, epochs=args.epochs)
    return 0


def _add_demo(sub) -> None:
    from kagglekit.demo.suite import DEMOS

    parser = _parser(sub, "demo", "build mini-competitions, train on CPU, run the inference notebook, score them",
                     "kagglekit demo multilabel --out build/demo",
                     description="Run the demos (all of them when none is named) and print one table of their "
                                 "results. Each trains for a fixed number of steps from a seed: two runs print the "
                                 "same figures.\n\n" + "\n".join(f"  {n:13s} {d}" for n, (_, d) in DEMOS.items()))
    parser.add_argument("names", nargs="*", metavar="name", help=f"demos to run: {', '.join(DEMOS)} (default: all)")
    parser.add_argument("--out", default="build/demo", help="folder for the data, models and outputs (default: build/demo)")
    parser.add_argument("--steps", type=int, help="training steps (default: each demo's own)")
    parser.add_argument("--train", type=int, metavar="N", help="train images, slides or fragments (default: each demo's own)")
    parser.add_argument("--test", type=int, metavar="N", help="test images, slides or fragments (default: each demo's own)")
    parser.add_argument("--folds", type=int, help="folds (multilabel, slides)")
    parser.add_argument("--seeds", type=int, help="heads per fold in the seed ensemble (slides)")
    parser.add_argument("--epochs", type=int, help="epochs of the MIL heads (slides)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notebook", help="inference notebook (default: notebooks/inference.ipynb of the source tree)")
    parser.set_defaults(handler=_demo)


def _run_job(args) -> int:
    from kagglekit.jobs import run_slides
    from kagglekit.jobs.registry import JOBS, OPTIONS

    spec = JOBS[args.job]
    options = {OPTIONS[flag][0]: getattr(args, OPTIONS[flag][0]) for flag in spec.flags
               if getattr(args, OPTIONS[flag][0]) is not None}
    job = spec.job_class()(**options)
    report = run_slides(job, args.slides, args.out, engine=args.engine, address=args.address, workers=args.workers,
                        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                        retries=args.retries, skip_existing=not args.redo, progress=not args.quiet)
    print(report.summary(), flush=True)
    return 3 if report.failed else 0


def _add_run(sub) -> None:
    from kagglekit.jobs.registry import JOBS, OPTIONS

    parser = _parser(sub, "run", "run a per-slide job over slides, in this process or on Ray; rerun to resume",
                     JOBS["bags"].example,
                     description="Run a job on every slide: one output per slide in --out, whole or absent, and "
                                 "manifest.jsonl. A rerun of the same command skips finished slides (same settings) "
                                 "and redoes the rest, so after a crash run it again. Exit code 0: no slide failed; "
                                 "3: some failed (the report names them); 1: an error.\n\n"
                                 + "\n".join(f"  {n:12s} {spec.help}" for n, spec in JOBS.items()))
    jobs = parser.add_subparsers(dest="job", required=True, metavar="job", title="jobs")
    for name, spec in JOBS.items():
        job = _parser(jobs, name, spec.help, spec.example)
        job.add_argument("--slides", required=True, help="a folder, or a quoted glob pattern such as 'train/*.png'")
        job.add_argument("--out", required=True, help="output folder (shared by every node on a cluster)")
        engine = job.add_argument_group("where it runs")
        engine.add_argument("--engine", choices=("auto", "local", "ray"), default="auto",
                            help="auto (default): Ray when it is installed and --workers > 1 or --address is given")
        engine.add_argument("--address", help="a running Ray cluster, e.g. ray://head:10001 (default: a private local one)")
        engine.add_argument("--workers", type=int, help="Ray workers (default: as many as fit)")
        engine.add_argument("--cpus-per-worker", type=float, default=1)
        engine.add_argument("--gpus-per-worker", type=float, default=0, help="1: each worker on its own GPU")
        engine.add_argument("--retries", type=int, default=3, help="further attempts for a failing slide (default 3)")
        engine.add_argument("--redo", action="store_true", help="redo every slide, finished or not")
        options = job.add_argument_group(f"{name} options")
        for flag in spec.flags:
            keyword, kind, help = OPTIONS[flag]
            options.add_argument(f"--{flag}", dest=keyword, type=kind, required=flag in spec.required, help=help)
    parser.set_defaults(handler=_run_job)


def _run_pipeline(kind: str):
    """The handler of ``kagglekit <kind>`` (segment, classify, or a registered pipeline kind)."""

    def handler(args) -> int:
        from kagglekit.pipeline import check
        from kagglekit.pipeline.config import load_config, read_config
        from kagglekit.pipeline.execute import execute

        if (args.config is None) == (args.config_file is None):
            raise InvalidArgumentError(f"give the pipeline TOML once: `kagglekit {kind} CONFIG` or `--config CONFIG`"
                                       + (f" (got {args.config_file} and --config {args.config})" if args.config else ""))
        args.config = args.config or args.config_file
        source = read_config(args.config)
        if args.check:
            load_config(source, kind=kind)  # a config of another kind is named as such
            return _print_check(check(source, args.input), args.config, "ready to run")
        report = execute(source, args.input, args.output, command=kind)
        try:
            print(report.summary(), flush=True)
        except BrokenPipeError:  # the reader went away (`kagglekit segment ... | head`): the file is written
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return report.exit_code(strict=args.strict)

    return handler


def _add_pipeline(kind):
    """The command of a pipeline kind (:mod:`kagglekit.pipeline.kind`): its help and example are the kind's."""

    def add(sub) -> None:
        purpose, name = kind.help or f"run the {kind.name} pipeline of a TOML config to submission.csv", kind.name
        parser = _parser(sub, name, purpose, kind.example,
                         description=f"{purpose[0].upper()}{purpose[1:]} (see kagglekit.pipeline.config). The fallback "
                                     "submission is written first, so every run that can read the sample submission "
                                     "leaves a valid file. Exit code 0: something was predicted; 3: every row fell back "
                                     "(--strict: any row); 1: an error.")
        parser.add_argument("config_file", nargs="?", metavar="CONFIG",
                            help=f"pipeline TOML of kind {name!r} (see kagglekit.pipeline.config)")
        parser.add_argument("--config", help="the same, as an option")
        parser.add_argument("--input", help="competition folder (default: $KAGGLEKIT_INPUT_DIR, /kaggle/input or ./input)")
        parser.add_argument("--output", help="folder for submission.csv (default: /kaggle/working on Kaggle, else .)")
        parser.add_argument("--strict", action="store_true", help="exit 3 when any row fell back, not only when all did")
        parser.add_argument("--check", action="store_true",
                            help="validate the config and the files it names (sample, checkpoints, threshold or decision "
                                 "files, inputs) without running a model or writing anything")
        parser.set_defaults(handler=_run_pipeline(name))

    return add


def _print_check(lines: list[tuple[bool, str]], config, ready: str) -> int:
    """Print a ``--check``'s (ok, line) pairs and its verdict; the exit code (1 when anything is a problem)."""
    for ok, line in lines:
        print(f"{'ok' if ok else 'problem'}: {line}")
    problems = sum(not ok for ok, _ in lines)
    print(f"{config}: {problems} problem(s)" if problems else f"{config}: {ready}")
    return 1 if problems else 0


def _train(args) -> int:
    from kagglekit.train.command import check_training, run_training

    if args.check:
        return _print_check(check_training(args.config, args.input), args.config, "ready to train")
    if args.out is None:
        raise InvalidArgumentError("--out: the model folder to write (fold checkpoints, oof.parquet, classify.toml)")
    print(run_training(args.config, args.input, args.out, progress=not args.quiet).summary())
    return 0


def _add_train(sub) -> None:
    parser = _parser(sub, "train", "train every fold of a training TOML and write the kernel's model folder",
                     "kagglekit train train.toml --input /kaggle/input/comp --out models/",
                     description="Train one model per fold (kagglekit.train.train_folds) of a training TOML (see "
                                 "kagglekit.train.config: [data] [preprocess] [model] [train] [augment] [folds] "
                                 "[decision] [kernel]) and write the model folder: fold checkpoints, oof.parquet, "
                                 "cv.json, decision.json, curves.png and classify.toml, ready for kagglekit bundle. "
                                 "A rerun keeps the folds already trained with the same settings.")
    parser.add_argument("config", metavar="CONFIG", help="the training TOML")
    parser.add_argument("--input", required=True, help="the competition folder (the training table and images)")
    parser.add_argument("--out", help="the model folder to write")
    parser.add_argument("--check", action="store_true", help="check the config, the table, the images and the model; train nothing")
    parser.set_defaults(handler=_train)


def _blend(args) -> int:
    from kagglekit.train.blending import run_blend

    report = run_blend(args.oof, args.labels, args.out, label=args.label, target=args.target, test=args.test or (),
                       id_column=args.id_column, labels_id_column=args.labels_id_column, method=args.method,
                       metric=args.metric, mode=args.mode, estimator=args.estimator, folds=args.folds,
                       repeats=args.repeats, seed=args.seed)
    print(report.summary())
    return 0


def _add_blend(sub) -> None:
    from kagglekit.train.blending import BLEND_METHODS

    parser = _parser(sub, "blend", "fit blend weights or a stacker on out-of-fold tables and blend the test tables",
                     "kagglekit blend a/oof.parquet b/oof.parquet --labels train.csv --label tags --test a/test.csv "
                     "b/test.csv --out blend/",
                     description="Fit blend weights (kagglekit.thresholds.fit_blend) or a stacker (fit_stacker) on the "
                                 "OOF tables of several models against the labels, with an honest estimate from nested "
                                 "folds (the first OOF table's fold column, else --folds), and write blend.json or "
                                 "stacker.json (classify's [stack] file), scores.csv and, with --test, the blended "
                                 "test.csv. Tables: oof.parquet from kagglekit train, or CSVs with an id column and one "
                                 "column per class (classify with [output] format = \"columns\").")
    parser.add_argument("oof", nargs="+", metavar="OOF", help="each model's out-of-fold table")
    parser.add_argument("--labels", required=True, help="the labels table (the training CSV)")
    parser.add_argument("--label", help="its label column (target class or multi_hot)")
    parser.add_argument("--target", default="multi_hot", choices=["class", "multi_hot", "columns"],
                        help="how the labels read: one class, space-separated labels, or a column per class")
    parser.add_argument("--labels-id-column", help="the labels table's id column (default: its first)")
    parser.add_argument("--id-column", default="id", help="the prediction tables' id column (default: id)")
    parser.add_argument("--test", nargs="+", metavar="TEST", help="each model's test table, in the OOF tables' order")
    parser.add_argument("--method", default="hill_climb", choices=BLEND_METHODS, help="how the models are combined")
    parser.add_argument("--metric", default="auc", choices=["auc", "log_loss"], help="what the blend weights maximise")
    parser.add_argument("--mode", default="mean", help="the blend's mode: mean, logit_mean, gmean or rank")
    parser.add_argument("--estimator", default="logistic", choices=["logistic", "extra_trees"], help="the stacker (method stack)")
    parser.add_argument("--folds", type=int, default=5, help="folds of the nested estimate without a fold column")
    parser.add_argument("--repeats", type=int, default=1, help="the stacker's repeated folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="the folder to write into")
    parser.set_defaults(handler=_blend)


def _commands():
    """Every command's adder: one per pipeline kind in the registry (variants run under their base's), then the rest."""
    from kagglekit.pipeline.kind import get_kind, kinds

    pipelines = [get_kind(name) for name in kinds()]
    return [*(_add_pipeline(k) for k in pipelines if k.variant_of is None),
            _add_train, _add_blend, _add_run, _add_demo, _add_wheels, _add_kernel, _add_bundle, _add_push]


_DESCRIPTION = "kagglekit: tiling, TTA, thresholds, pipelines and offline delivery for Kaggle image competitions."
_EPILOG = """examples:
  kagglekit segment --config models/segment.toml --input /kaggle/input/comp --output /kaggle/working
  kagglekit segment models/segment.toml --input /kaggle/input/comp --check
  kagglekit classify --config models/classify.toml --input /kaggle/input/comp --output /kaggle/working
  kagglekit train train.toml --input /kaggle/input/comp --out models/
  kagglekit blend a/oof.parquet b/oof.parquet --labels train.csv --label tags --test a/test.csv b/test.csv --out blend/
  kagglekit run bags --slides 'train/*.png' --out bags/ --backbone timm/resnet18 --weights r18.safetensors --workers 2
  kagglekit demo --out build/demo
  kagglekit demo multilabel
  kagglekit wheels build --dest wheels --dataset-id you/kagglekit-wheels
  kagglekit kernel check kernel-metadata.json
  kagglekit bundle --models models/ --owner you
  kagglekit push dist/kaggle --create --dry-run

exit codes: 0 done, 3 only fallback rows (the submission is still valid), 1 error, 2 usage error.
'kagglekit <command> --help' shows a command's options and an example."""


def build_parser() -> argparse.ArgumentParser:
    from kagglekit import __version__

    parser = argparse.ArgumentParser(prog="kagglekit", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kagglekit {__version__}")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="debug logging, with the traceback of every failure")
    loud.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", title="commands")
    for add in _commands():
        add(sub)
    return parser


@contextlib.contextmanager
def _logging_to_stderr(args):
    """kagglekit's log to stderr, one line a message, while the command runs: INFO by default, DEBUG
    with -v, WARNING with -q. The logger is put back as it was afterwards (main() may run in-process)."""
    log = logging.getLogger("kagglekit")
    before = log.handlers[:], log.level, log.propagate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.handlers[:], log.level, log.propagate = before


def main(argv=None) -> int:
    """Run the ``kagglekit`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    with _logging_to_stderr(args):
        try:
            return args.handler(args)
        except KagglekitError as exc:
            if args.verbose:
                traceback.print_exc(file=sys.stderr)
            print(f"kagglekit: error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
