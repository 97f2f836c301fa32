"""`itd index ...` end to end on the tiny bundle, with --json."""

from __future__ import annotations

import json

import pytest

from itd_cli.main import main
from tests.feature_index.conftest import CORPUS, RETAIN


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory, tiny_pipeline_dir, tiny_sae_dir):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    (folder / "retain.txt").write_text("\n".join(RETAIN) + "\n")
    (folder / "empty.txt").write_text("\n\n")
    bundle = ["--bundle", tiny_pipeline_dir, "--sae", tiny_sae_dir, "--layer", "1", "--index-dir", folder / "index"]
    return folder, bundle


def test_build_then_query_with_json(capsys, cli_setup):
    folder, bundle = cli_setup
    code, out, err = run(capsys, "index", "build", *bundle, "--corpus", folder / "corpus.txt", "--top-k", 5, "--json")
    assert code == 0, err
    built = json.loads(out)
    assert built["stats"]["n_prompts"] == len(CORPUS) and built["faiss"]["factory"] == "Flat" and built["feature_map"]["method"] == "pca"

    code, out, err = run(capsys, "index", "build", *bundle, "--corpus", folder / "corpus.txt", "--top-k", 5, "--json")
    assert code == 0 and json.loads(out)["stats"]["reused"] is True

    code, out, err = run(capsys, "index", "similar", 12, "-k", 4, *bundle, "--json")
    assert code == 0, err
    similar = json.loads(out)
    assert similar["feature"] == 12 and len(similar["similar"]) == 4 and 12 not in [n["id"] for n in similar["similar"]]

    code, out, err = run(capsys, "index", "top-examples", 12, "-k", 3, *bundle, "--json")
    assert code == 0, err
    top = json.loads(out)
    assert top["stats"]["id"] == 12 and len(top["examples"]) <= 3
    assert all(e["prompt"] in CORPUS for e in top["examples"])

    code, out, err = run(capsys, "index", "label", 12, "lighthouse feature", *bundle, "--json")
    assert code == 0 and json.loads(out)["label"] == "lighthouse feature"
    code, out, err = run(capsys, "index", "search", "Lighthouse", *bundle, "--json")
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert hits[0]["feature"] == 12 and "label" in hits[0]["matched"]

    code, out, err = run(capsys, "index", "concept", "--concept", "tom cruise", "--retain", folder / "retain.txt", "--top-n", 16, *bundle, "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "tom cruise"

    code, out, err = run(capsys, "index", "top-examples", 12, *bundle)  # the text form
    assert code == 0 and "feature 12 (lighthouse feature)" in out


def test_errors_go_to_stderr_with_exit_1(capsys, cli_setup):
    folder, bundle = cli_setup
    for argv in (("index", "similar", "twelve", *bundle, "--json"),
                 ("index", "similar", 99999, *bundle, "--json"),
                 ("index", "top-examples", 3, "-k", 0, *bundle, "--json"),
                 ("index", "build", *bundle, "--corpus", folder / "empty.txt", "--json"),
                 ("index", "search", " ", *bundle, "--json")):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == "" and err.strip().splitlines()[-1].startswith("error: "), argv
