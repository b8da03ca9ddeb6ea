"""README is tested: its commands run as written (smoke mode), its stale-set table matches what Dagster
reports, and every bash block is either run here or says why not (tests/readme.py)."""

import json
import textwrap

import dagster as dg
import pytest

from tests import readme

RUN = {
    "setup": ".ci/run",
    "tests": ".ci/run",
    "main": "conftest.smoke_graph",
    "generate": "this file",
    "doctor": "this file",
    "backfill": "this file",
    "stale-sets": "this file (a table)",
}
V2_ROW, V1_ROW = "`ohlora_core/scores/v2.py`", "`ohlora_core/scores/v1.py`"


def test_every_bash_block_is_run_or_says_why_not():
    blocks = readme.blocks()
    bash = [b for b in blocks if b.language == "bash"]
    assert len(bash) == readme.bash_block_count(), "a bash block without a `<!-- readme-test: ... -->` tag"
    for b in bash:
        assert b.name in RUN or (b.name == "skip" and len(b.why) > 10), (b.name, b.text[:80])
    assert {b.name for b in blocks} >= set(RUN)


def test_ci_runs_the_set_up_and_test_blocks_as_written():
    ci = (readme.REPO / ".ci" / "run").read_text()
    assert "tests/readme.py setup" in ci and "tests/readme.py tests" in ci
    assert readme.block("tests").commands == ["python -m pytest -q"]


def test_the_main_job_materializes_the_whole_graph_on_postgres_and_says_so(smoke_graph):
    from ohlora_dagster.smoke import defs

    with smoke_graph.instance() as instance:
        assert type(instance.run_storage).__name__ == "OhloraPostgresRunStorage"
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        assert len(keys) == 20 and all(instance.get_latest_materialization_event(k) for k in keys)
    out = smoke_graph.output
    assert out.count("smoke mode: deterministic random weights") == 1  # the banner, once, at the start
    summary = out[out.index("materialized:") :]
    for key in keys:
        assert f"{key.to_user_string()} " in summary and str(smoke_graph.root / "artifacts" / "smoke") in summary


def test_the_generate_examples_run_and_a_request_replays_byte_for_byte(smoke_graph, tmp_path):
    for command in readme.block("generate").commands:
        readme.run(command, smoke_graph.env, cwd=tmp_path)
    jpgs = lambda d: {p.name: p.read_bytes() for p in (tmp_path / d).glob("*.jpg")}  # noqa: E731
    assert sorted(jpgs("final")) == [f"{i:06d}.jpg" for i in range(4)] and jpgs("again") == jpgs("final")
    assert len(jpgs("v4")) == 2 and len(jpgs("directions")) == 2
    request = json.loads((tmp_path / "final" / "request.json").read_text())
    assert request["values"] == {"eyes": 1.8, "mouth": 1.6, "pose": -1.2} and request["n"] == 4


def test_doctor_finds_nothing_to_fix_after_the_main_job(smoke_graph):
    (command,) = readme.block("doctor").commands
    assert "nothing to fix" in readme.run(command, smoke_graph.env).stdout


@pytest.mark.parametrize("row,module", [(V2_ROW, "v2"), (V1_ROW, "v1")])
def test_the_stale_sets_in_readme_are_what_dagster_reports(smoke_graph, monkeypatch, row, module):
    import importlib

    from ohlora_dagster.dagster_workarounds.stale import stale_assets
    from ohlora_dagster.definitions import location

    scores = importlib.import_module(f"ohlora_core.scores.{module}")
    monkeypatch.setattr(scores, "ALGORITHM_VERSION", scores.ALGORITHM_VERSION + "-bumped")
    monkeypatch.setenv("DAGSTER_PG_URL", smoke_graph.env["DAGSTER_PG_URL"])
    with smoke_graph.instance() as instance:
        stale = stale_assets(instance, location("smoke"))
    assert sorted(k.split("/")[1] for k in stale) == sorted(readme.table_row(row))
    assert all(reasons == ["CODE: has a new code version"] for reasons in stale.values())


def test_the_backfill_commands_bring_back_a_fresh_graph(smoke_graph, tmp_path):
    """Last among the tests that use the smoke graph: it re-materializes the ten assets of a v2 bump."""
    bump = tmp_path / "bump"
    bump.mkdir()  # what a developer does to ohlora_core/scores/v2.py, for every process these commands start
    (bump / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import ohlora_core.scores.v2 as v2
        v2.ALGORITHM_VERSION += "-bumped"
    """)
    )
    env = {**smoke_graph.env, "PYTHONPATH": str(bump)}
    listing, launch, after = readme.block("backfill").commands
    before = readme.run(listing, env).stdout
    assert sorted(line.split(":")[0].split("/")[1] for line in before.splitlines()) == sorted(readme.table_row(V2_ROW))
    readme.run(launch, env, timeout=1500)
    assert readme.run(after, env).stdout.strip() == "nothing is stale"
    with smoke_graph.instance() as instance:
        runs = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
        assert len(runs[0].dagster_run.asset_selection) == 10
