"""``micromoment replay`` from the command line: generated files in, JSON/PNG/summary out.

No broker needed: replay drives the pipeline in-process.
"""

from __future__ import annotations

import csv
import gzip
import json

import orjson
import pytest

from streams.cli import main
from streams.synthetic import SyntheticShop
from tests.unit.test_replay_open_bandit import assert_result_is_coherent, write_open_bandit

T0 = 1_700_000_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    """A synthetic shop's events as a gzipped CSV (with header), as the project's own
    events JSONL, and its catalog as a header-less ``::`` file."""
    root = tmp_path_factory.mktemp("replay")
    shop = SyntheticShop(n_users=80, n_items=120, seed=5, run_id="cli")
    events = list(shop.events(1_200, start_ms=T0, step_ms=50))
    with gzip.open(root / "log.csv.gz", "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "sku", "when_ms", "event_type", "device"])
        for e in events:
            writer.writerow([e.user_id, e.item_id or "", e.timestamp, e.event_type,
                             e.context["device"]])
    with open(root / "events.jsonl", "wb") as handle:
        for e in events:
            record = {"event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id,
                      "event_type": e.event_type, "timestamp": e.timestamp, "context": e.context}
            if e.value is not None:
                record["value"] = e.value
            handle.write(orjson.dumps(record) + b"\n")
        handle.write(b'{"event_id": "bad", "user_id": "u"}\n')  # dead-lettered: no type, no time
    with open(root / "items.dat", "w") as handle:
        for item in shop.catalog():
            handle.write(f"{item.item_id}::{item.text}::{'|'.join(item.categories)}\n")
    return root


def read_json(path) -> dict:
    return json.loads(path.read_text())


def check_consistent(out: dict, k: int) -> None:
    hr = f"hr@{k}"
    assert {"dataset", "events", "metrics", "baselines", "groups", "targets", "skipped"} <= set(out)
    assert set(out["baselines"]) == {"popularity", "random"}
    for scores in (out["metrics"], *out["baselines"].values()):
        assert {hr, f"ndcg@{k}", "mrr", "coverage", "gini", "novelty"} <= set(scores)
        assert scores["targets"] == out["targets"]
        assert 0.0 <= scores[f"ndcg@{k}"] <= scores[hr] <= 1.0
        assert 0.0 <= scores["mrr"] <= scores[hr]
        assert 0.0 < scores["coverage"] <= 1.0 and 0.0 <= scores["gini"] <= 1.0
    assert out["targets"] + sum(out["skipped"].values()) == out["events"]
    for values in out["groups"].values():
        assert sum(g["targets"] for g in values.values()) == out["targets"]
        total_hits = sum(g[hr]["hybrid"] * g["targets"] for g in values.values())
        assert total_hits == pytest.approx(out["metrics"][hr] * out["targets"])
    if "mae" in out["metrics"]:  # only where the log has ratings
        assert 0.0 <= out["metrics"]["mae"] <= out["metrics"]["rmse"]


def test_replay_a_csv_with_a_catalog(shop_files, tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code = main(["replay", str(shop_files / "log.csv.gz"), "--user-col", "customer",
                 "--item-col", "sku", "--time-col", "when_ms", "--time-unit", "ms",
                 "--group-col", "device", "--items", str(shop_files / "items.dat"),
                 "--item-columns", "item_id,text,categories", "-k", "5", "--seed", "3",
                 "--json", str(out_json), "--plot", str(out_png), "--no-progress"])
    assert code == 0
    out = read_json(out_json)
    check_consistent(out, k=5)
    assert out["dataset"] == "log.csv.gz" and out["format"] == "csv" and out["k"] == 5
    assert out["events"] == 1_200 and out["catalog_size"] > 100 and out["cold_targets"] == 0
    # recommendation_request rows have an empty item cell: valid events, but no target.
    assert out["dead_lettered"] == 0 and out["skipped"]["no_item"] > 0
    assert set(out["groups"]) == {"history", "device"}
    assert out["metrics"]["hr@5"] > out["baselines"]["popularity"]["hr@5"]
    assert out["settings"]["seed"] == 3
    assert out_png.read_bytes().startswith(PNG_MAGIC)
    stdout = capsys.readouterr().out
    assert "hybrid (pipeline)" in stdout and "device=mobile" in stdout
    assert f"{out['metrics']['hr@5']:.4f}" in stdout


def test_replay_the_projects_own_events(shop_files, tmp_path, capsys):
    out_json = tmp_path / "events.json"
    code = main(["replay", str(shop_files / "events.jsonl"), "--format", "events",
                 "--json", str(out_json), "--no-progress", "--positive-threshold", "3"])
    assert code == 0
    out = read_json(out_json)
    check_consistent(out, k=10)
    assert "mae" in out["metrics"]  # the events carry ratings
    assert out["events"] == 1_201 and out["dead_lettered"] == 1
    assert out["skipped"]["no_item"] > 0  # recommendation requests: valid, but no target
    assert out["format"] == "events"


def test_replay_open_bandit_layout(tmp_path, capsys):
    root = write_open_bandit(tmp_path / "obd", n_rows=1_500)
    out_json, out_png = tmp_path / "obd.json", tmp_path / "obd.png"
    code = main(["replay", "--format", "open-bandit", str(root), "--campaign", "all",
                 "--json", str(out_json), "--plot", str(out_png), "--no-progress"])
    assert code == 0
    out = read_json(out_json)
    assert_result_is_coherent(out)
    assert out["events"] == 1_500 and out["dataset"] == "open-bandit/all"
    assert out_png.read_bytes().startswith(PNG_MAGIC)
    assert "logged Bernoulli TS policy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{dir}/absent.csv"], "no such file"),
        (["{dir}/log.csv.gz", "--user-col", "nobody"], "no user column 'nobody'"),
        (["{dir}/log.csv.gz", "--user-col", "customer", "--item-col", "sku", "--time-col",
          "when_ms"], "try --time-unit ms"),
        (["{dir}/events.jsonl", "--format", "open-bandit"], "not a directory"),
        (["{dir}/log.csv.gz", "--json", "{dir}/no/such/dir/out.json"], "directory does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_2(shop_files, capsys, args, message):
    code = main(["replay", *[a.format(dir=shop_files) for a in args], "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("micromoment: error: ") and message in err
    assert len(err.splitlines()) == 1
