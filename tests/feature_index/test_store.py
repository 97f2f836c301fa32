"""Labels and lists: round trips, Neuronpedia-style JSON, concurrent writers, crashes, text search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from feature_index.store import FeatureStore
from itd_core.errors import ItdError

ROOT = Path(__file__).resolve().parents[2]


def test_labels_round_trip_with_history(tmp_path):
    store = FeatureStore(tmp_path / "store.sqlite", "fp", 100)
    store.set_label(7, "  Picasso  ", author="ana")
    store.set_label(7, "cubism")
    store.set_label(9, "lighthouses")
    assert store.label(7) == "cubism" and store.labels() == {7: "cubism", 9: "lighthouses"}
    assert [h.label for h in store.label_history(7)] == ["Picasso", "cubism"]
    store.delete_label(9)
    assert store.label(9) is None and [h.label for h in store.label_history(9)] == ["lighthouses", None]
    store.set_label(1, "one")
    store.set_label(2, "two")
    reopened = FeatureStore(tmp_path / "store.sqlite", "fp", 100)
    assert reopened.labels([1, 2, 7, 50]) == {1: "one", 2: "two", 7: "cubism"}
    assert reopened.search_labels("CUB") == [(7, "cubism")]
    assert reopened.search_labels("%") == [], "LIKE wildcards in the query are literal"
    for bad in (-1, 100, "x", 2.5):
        with pytest.raises(ItdError):
            reopened.set_label(bad, "nope")


def test_lists_round_trip_and_json_export_import(tmp_path):
    store = FeatureStore(tmp_path / "a.sqlite", "fp", 100, model_id="demo", layer="encoder.layer.3")
    store.create_list("portraits", "faces and people")
    store.add_to_list("portraits", [3, 5], "a face")
    store.add_to_list("portraits", [8])
    store.add_to_list("portraits", [3])  # again, without a description: keeps "a face"
    store.set_label(5, "eyes")
    store.remove_from_list("portraits", [8])
    got = store.get_list("portraits")
    assert got.features == [3, 5] and got.items[0].description == "a face" and got.description == "faces and people"
    document = store.export_list("portraits")
    assert document["features"][1] == {"modelId": "demo", "layer": "encoder.layer.3/itd-sae-fp", "index": "5", "description": "a face", "label": "eyes"}
    json.dumps(document)

    other = FeatureStore(tmp_path / "b.sqlite", "fp", 100)
    imported = other.import_list(json.loads(json.dumps(document)))
    assert imported.model_dump() == got.model_dump() and other.label(5) == "eyes"
    other.set_label(3, "mine")
    other.add_to_list("portraits", [42], "kept")
    merged = other.import_list({**document, "features": [{"index": 3, "label": "theirs"}, {"index": "60", "description": "new"}]})
    assert merged.features == [3, 5, 42, 60], "import merges; nothing already there is removed"
    assert other.label(3) == "mine", "an existing label is never overwritten by an import"

    with pytest.raises(ItdError, match="another SAE"):
        other.import_list({**document, "sae_fingerprint": "other"})
    with pytest.raises(ItdError, match="unknown feature 100"):
        other.import_list({"name": "bad", "features": [{"index": 1}, {"index": 100}]})
    assert "bad" not in other.list_names(), "a failed import writes nothing"
    neuronpedia = {"name": "np", "neurons": [{"modelId": "x", "layer": "y", "index": "4", "description": "d"}]}
    assert other.import_list(neuronpedia).features == [4]
    other.rename_list("np", "np2")
    other.delete_list("np2")
    assert other.list_names() == ["portraits"]
    with pytest.raises(ItdError, match="no list named"):
        other.get_list("np2")


def test_a_store_of_another_sae_is_refused(tmp_path):
    FeatureStore(tmp_path / "s.sqlite", "fp-one", 10).set_label(1, "keep me")
    with pytest.raises(ItdError, match="another SAE"):
        FeatureStore(tmp_path / "s.sqlite", "fp-two", 10)
    assert FeatureStore(tmp_path / "s.sqlite", "fp-one", 10).label(1) == "keep me"


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from feature_index.store import FeatureStore
    store = FeatureStore({path!r}, "fp", 10000)
    offset = int(sys.argv[1])
    for i in range({n}):
        store.set_label(offset + i, f"writer {{offset}} label {{i}}")
        store.add_to_list("shared", [offset + i])
        if {report}:
            print(offset + i, flush=True)
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "store.sqlite"
    FeatureStore(path, "fp", 10000)
    script = _WRITER.format(root=str(ROOT), path=str(path), n=150, report=False)
    writers = [subprocess.Popen([sys.executable, "-c", script, str(offset)], stderr=subprocess.PIPE) for offset in (0, 5000)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    store = FeatureStore(path, "fp", 10000)
    labels = store.labels()
    assert len(labels) == 300 and labels[5149] == "writer 5000 label 149"
    assert sorted(store.get_list("shared").features) == list(range(150)) + list(range(5000, 5150))


def test_a_killed_writer_loses_no_committed_label(tmp_path):
    path = tmp_path / "store.sqlite"
    FeatureStore(path, "fp", 10000)
    script = _WRITER.format(root=str(ROOT), path=str(path), n=100000, report=True)
    writer = subprocess.Popen([sys.executable, "-c", script, "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    committed = []
    for line in writer.stdout:
        committed.append(int(line))
        if len(committed) == 40:
            os.kill(writer.pid, signal.SIGKILL)
            break
    writer.wait(timeout=30)
    labels = FeatureStore(path, "fp", 10000).labels()
    assert set(committed) <= set(labels), "every label reported as written survived the kill"


def test_a_damaged_store_file_is_a_clear_error(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ItdError, match="label store"):
        FeatureStore(path, "fp", 10)


def test_a_read_only_store_reads_and_refuses_writes_with_a_clear_message(tmp_path):
    store = FeatureStore(tmp_path / "store.sqlite", "fp", 100)
    store.set_label(3, "red things")
    store.close()  # the last connection folds the write-ahead log into the file
    before = (tmp_path / "store.sqlite").read_bytes()
    reader = FeatureStore(tmp_path / "store.sqlite", "fp", 100, read_only=True)
    assert reader.label(3) == "red things" and reader.labels() == {3: "red things"}
    with pytest.raises(ItdError, match="read-only.*can be read, not changed"):
        reader.set_label(4, "blue")
    with pytest.raises(ItdError, match="fingerprint"):
        FeatureStore(tmp_path / "store.sqlite", "other", 100, read_only=True)
    assert (tmp_path / "store.sqlite").read_bytes() == before
