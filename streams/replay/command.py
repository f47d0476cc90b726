"""``micromoment replay``: its flags, and the run from arguments to summary, JSON and PNG.

Kept apart from ``streams.cli`` so that the main parser only calls
:func:`add_replay_parser`; the heavy imports (numpy, River, matplotlib, tqdm) happen
when the command runs, not when ``micromoment --help`` is asked for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_replay_parser", "cmd_replay", "FORMATS"]

FORMATS = ("auto", "csv", "jsonl", "events", "open-bandit", "decisions")

DESCRIPTION = """\
Replay a log in timestamp order through the worker's own pipeline (same validation,
state, learners and ranking), test-then-learn: before each interaction is learned,
the pipeline recommends for that user and the recommendation is scored against what
the user did. The popularity (the recommender's non-personalized path) and random
baselines are scored on the same targets. With --format open-bandit, PATH is the Open
Bandit Dataset's directory and the pipeline's click rate is estimated off-policy on
its uniformly random log (replay, IPS, SNIPS, doubly robust, with 95% intervals).
With --format decisions, PATH is a log of decisions (joined rows, or the decisions,
decisions.out and rewards records concatenated) and the mean reward of another
decision policy or exploration rate is estimated off-policy (IPS, SNIPS, doubly
robust, with 95% intervals) beside the logged policy's."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _separator(text: str) -> str:
    """Separators as typed in a shell: ``\\t`` or ``tab`` mean a tab."""
    value = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if not value:
        raise argparse.ArgumentTypeError("a separator must not be empty")
    return value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def add_replay_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``replay`` on the ``micromoment`` subparsers."""
    p = sub.add_parser("replay", help="evaluate the pipeline offline by replaying a log (test-then-learn)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH",
                   help="interaction log (CSV/TSV/.dat/JSONL, .gz allowed), events JSONL, or the "
                        "Open Bandit Dataset directory")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="auto (default: by extension; a directory is open-bandit), csv (any "
                        "delimited text), jsonl (one object per line), events (the project's "
                        "event records, passed on as they are), open-bandit")
    log = p.add_argument_group("generic logs")
    log.add_argument("--sep", type=_separator, metavar="SEP",
                     help="field separator (default by extension: , for .csv, tab for .tsv, :: for .dat)")
    log.add_argument("--columns", type=_names, metavar="NAMES",
                     help="names of the columns of a header-less file, comma-separated, e.g. "
                          "user_id,item_id,rating,timestamp")
    log.add_argument("--user-col", default="user_id", metavar="COL",
                     help="user column (a name or a 0-based index; default user_id)")
    log.add_argument("--item-col", default="item_id", metavar="COL", help="item column (default item_id)")
    log.add_argument("--time-col", default="timestamp", metavar="COL", help="time column (default timestamp)")
    log.add_argument("--time-unit", choices=["s", "ms", "iso"], default="s",
                     help="unit of the time column: epoch seconds (default), milliseconds, or ISO 8601")
    log.add_argument("--rating-col", metavar="COL",
                     help="rating column; rows become rating events (default: 'rating' if present)")
    log.add_argument("--type-col", metavar="COL",
                     help="event type column, values as in the events topic (default: 'event_type' "
                          "if present; else rating or view)")
    log.add_argument("--group-col", metavar="COL",
                     help="also break HR@K down by this column (events format: a field or context key)")
    log.add_argument("--positive-threshold", type=float, metavar="X",
                     help="ratings below X are negative feedback, not test targets (default: every "
                          "rating is a target)")
    items = p.add_argument_group("item catalog (so the content learner sees categories)")
    items.add_argument("--items", metavar="PATH",
                       help="catalog file: items JSONL, or delimited with an id and a categories column")
    items.add_argument("--item-columns", type=_names, metavar="NAMES",
                       help="names of the columns of a header-less catalog, e.g. item_id,title,categories")
    items.add_argument("--item-id-col", default="item_id", metavar="COL", help="item id column (default item_id)")
    items.add_argument("--categories-col", default="categories", metavar="COL",
                       help="categories column (default categories)")
    items.add_argument("--categories-sep", type=_separator, default="|", metavar="SEP",
                       help="separator between categories (default |)")
    items.add_argument("--item-sep", type=_separator, metavar="SEP",
                       help="field separator of the catalog (default by its extension)")
    bandit = p.add_argument_group("open bandit dataset")
    bandit.add_argument("--campaign", choices=["all", "men", "women"], default="all",
                        help="campaign to replay (default all)")
    decide = p.add_argument_group("decision logs (--format decisions)")
    decide.add_argument("--policy", choices=["epsilon-greedy", "softmax", "thompson", "linucb"],
                        default="linucb", help="the target policy to evaluate (default linucb)")
    decide.add_argument("--exploration", type=float, default=0.05, metavar="EPSILON",
                        help="the target's exploration rate epsilon (default 0.05)")
    decide.add_argument("--alpha", type=float, default=1.0, metavar="A",
                        help="LinUCB's confidence width (default 1)")
    decide.add_argument("--temperature", type=float, default=0.02, metavar="T",
                        help="softmax temperature (default 0.02)")
    decide.add_argument("--scale", type=float, default=0.25, metavar="S",
                        help="Thompson sampling's posterior scale (default 0.25)")
    decide.add_argument("--decision-point", metavar="NAME",
                        help="evaluate only this decision point's decisions (default: all)")
    decide.add_argument("--default-reward", type=float, default=0.0, metavar="R",
                        help="reward of a logged decision without one (default 0)")
    out = p.add_argument_group("evaluation and output")
    out.add_argument("-k", "--k", type=_positive_int, default=10, metavar="K",
                     help="length of the scored lists (default 10; open-bandit always uses its 3 positions)")
    out.add_argument("--seed", type=int, metavar="N",
                     help="seed of the learners and the random baseline (env MICROMOMENT_SEED, default 42)")
    out.add_argument("--limit", type=_count, default=0, metavar="N",
                     help="replay only the first N rows of the file (default 0 = all)")
    out.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    out.add_argument("--plot", metavar="PATH",
                     help="save a PNG of the running HR@K (open-bandit: running CTR) of each strategy")
    out.add_argument("--no-progress", action="store_true",
                     help="no progress bar (it is also off when stderr is not a terminal)")
    return p


def _progress_bar(total: int, disabled: bool, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=disabled, dynamic_ncols=True,
                smoothing=0.1, desc="replay")


def _check_output(path: str | None, what: str) -> None:
    from streams.cli import CliError

    if path is not None and not Path(path).resolve().parent.is_dir():
        raise CliError(f"{what} {path}: its directory does not exist")


def _format(args: argparse.Namespace) -> str:
    if args.format != "auto":
        return args.format
    path = Path(args.path)
    if path.is_dir():
        return "open-bandit"
    from streams.replay.loaders import detect_format

    return detect_format(path)


def cmd_replay(args: argparse.Namespace) -> int:
    """Run ``micromoment replay``; expected failures become one-line errors (exit 2)."""
    from streams.cli import CliError
    from streams.replay.errors import ReplayError

    _check_output(args.json, "--json")
    _check_output(args.plot, "--plot")
    no_progress = args.no_progress or not sys.stderr.isatty()
    try:
        fmt = _format(args)
        if fmt == "open-bandit":
            result, plot = _run_open_bandit(args, no_progress)
        elif fmt == "decisions":
            result, plot = _run_decisions(args)
        else:
            result, plot = _run_log(args, fmt, no_progress)
    except ReplayError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        import orjson

        Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    if args.plot:
        plot(args.plot)
    from streams.replay.report import format_open_bandit, format_prequential

    if fmt == "decisions":
        from streams.replay.decisions import format_decisions

        print(format_decisions(result))
    else:
        print(format_open_bandit(result) if fmt == "open-bandit" else format_prequential(result))
    for path, what in ((args.json, "results"), (args.plot, "plot")):
        if path:
            print(f"{what} written to {path}", file=sys.stderr)
    return 0


def _settings(args: argparse.Namespace, k: int) -> Any:
    from streams.replay.prequential import replay_settings
    from streams.settings import Settings

    return replay_settings(Settings.from_env(), k=k, seed=args.seed)


def _run_log(args: argparse.Namespace, fmt: str, no_progress: bool) -> tuple[dict, Any]:
    from streams.replay.loaders import ItemSpec, LogSpec, load_events, load_items, load_log
    from streams.replay.plot import running_mean, save_running_plot
    from streams.replay.prequential import STRATEGIES, Prequential

    if fmt == "events":
        events = load_events(args.path, group_col=args.group_col, limit=args.limit)
    else:
        spec = LogSpec(fmt=fmt, sep=args.sep, columns=args.columns, user_col=args.user_col,
                       item_col=args.item_col, time_col=args.time_col, time_unit=args.time_unit,
                       rating_col=args.rating_col, type_col=args.type_col, group_col=args.group_col)
        events = load_log(args.path, spec, limit=args.limit)
    items = []
    if args.items:
        items = load_items(args.items, ItemSpec(sep=args.item_sep, columns=args.item_columns,
                                                id_col=args.item_id_col,
                                                categories_col=args.categories_col,
                                                categories_sep=args.categories_sep))
    settings = _settings(args, args.k)
    replay = Prequential(settings, k=args.k, positive_threshold=args.positive_threshold,
                         seed=settings.seed, group_name=args.group_col)
    replay.add_items(items)
    hr = f"hr@{args.k}"
    with _progress_bar(len(events), no_progress, "ev") as bar:
        def progress(run: Prequential, n: int) -> None:
            bar.set_postfix_str(f"{hr} {run.scores['hybrid'].hit_rate:.3f}", refresh=False)
            bar.update(n)

        result = replay.run(events, dataset=Path(args.path).name, on_progress=progress)

    def plot(path: str) -> None:
        save_running_plot(path, {name: running_mean(result.scores[name].hits) for name in STRATEGIES},
                          title=f"prequential {hr.upper()}: {Path(args.path).name}",
                          ylabel=f"running {hr.upper()}", xlabel="test targets (time order)")

    out = result.to_json()
    out["format"] = fmt
    return out, plot


def _run_decisions(args: argparse.Namespace) -> tuple[dict, Any]:
    from streams.decisions.config import ConfigError, PointConfig
    from streams.replay.decisions import evaluate_decisions, load_decision_log
    from streams.replay.errors import ReplayError
    from streams.settings import Settings

    try:
        config = PointConfig.from_dict({"policy": args.policy, "epsilon": args.exploration,
                                        "alpha": args.alpha, "temperature": args.temperature,
                                        "scale": args.scale})
    except ConfigError as exc:
        raise ReplayError(str(exc)) from None
    log = load_decision_log(args.path, args.default_reward, args.decision_point)
    if args.limit:
        log = log[:args.limit]
    seed = Settings.from_env().seed if args.seed is None else args.seed
    result = evaluate_decisions(log, config, seed=seed)
    result["dataset"] = Path(args.path).name
    result["format"] = "decisions"

    def plot(path: str) -> None:
        from streams.cli import CliError

        raise CliError("--plot is not available with --format decisions")

    return result, plot


def _run_open_bandit(args: argparse.Namespace, no_progress: bool) -> tuple[dict, Any]:
    import numpy as np

    from streams.replay.open_bandit import POSITIONS, OpenBanditReplay
    from streams.replay.plot import running_ratio, save_running_plot
    from streams.replay.prequential import STRATEGIES

    settings = _settings(args, POSITIONS)
    replay = OpenBanditReplay(args.path, args.campaign, settings, seed=settings.seed, limit=args.limit)
    with _progress_bar(len(replay.log), no_progress, "row") as bar:
        def progress(run: OpenBanditReplay, n: int) -> None:
            ctr = run.running_ctr
            bar.set_postfix_str("policy CTR " + ("n/a" if ctr is None else f"{100 * ctr:.2f}%"),
                                refresh=False)
            bar.update(n)

        result = replay.run(on_progress=progress)

    def plot(path: str) -> None:
        log = replay.log
        series = {}
        for name in STRATEGIES:
            matched = np.array(replay.choices[name], dtype=str) == log.items
            series[name] = running_ratio(log.clicks * matched, matched)
        save_running_plot(path, series, title=f"replay CTR on the random log: {result['dataset']}",
                          ylabel="running CTR (matched rows)", xlabel="logged impressions (time order)",
                          references={"logged random CTR": result["random_ctr"],
                                      "logged Bernoulli TS CTR": result["bts_ctr"]})

    return result, plot
