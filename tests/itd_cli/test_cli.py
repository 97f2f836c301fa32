"""The `itd` CLI end to end on the tiny local diffusers folder and SAE."""

import json
import subprocess
import sys

import pytest

from itd_cli.main import main

TARGET = ["A portrait of Tom Cruise", "Tom Cruise in an official photo", "An oil painting of Tom Cruise"]
RETAIN = ["A portrait of Brad Pitt", "a cat on a mat", "a house by a lake", "Emma Stone in an official photo"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "target.txt").write_text("\n".join(TARGET) + "\n")
    (folder / "retain.csv").write_text("case_number,prompt\n" + "".join(f'{i},"{p}"\n' for i, p in enumerate(RETAIN)))
    (folder / "templates.txt").write_text("A portrait of {}\n{} in an official photo\n")
    return folder


@pytest.fixture(scope="module")
def calibrated(files, tiny_pipeline_dir, tiny_sae_dir):
    """A selected and calibrated config (the paper's method) to mutate."""
    config = files / "calibrated.json"
    assert main([str(a) for a in ["concept", "select", *bundle_args(tiny_pipeline_dir, tiny_sae_dir), "--concept", "Tom Cruise", "--method", "paper",
                                  "--prompts", files / "target.txt", "--retain", files / "retain.csv", "--top-n", 16, "-o", config]]) == 0
    assert main(["calibrate", str(config), "--retain", str(files / "retain.csv")]) == 0
    return config


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def bundle_args(tiny_pipeline_dir, tiny_sae_dir):
    return ["--bundle", tiny_pipeline_dir, "--sae", tiny_sae_dir, "--layer", "1"]


def test_select_calibrate_classify_eval_generate(capsys, files, tiny_pipeline_dir, tiny_sae_dir):
    config = files / "erasure.json"
    code, out, err = run(capsys, "concept", "select", *bundle_args(tiny_pipeline_dir, tiny_sae_dir), "--concept", "Tom Cruise", "--method", "paper",
                         "--prompts", files / "target.txt", "--retain", files / "retain.csv", "--top-n", 16, "-o", config, "--json")
    assert code == 0, err
    selected = json.loads(out)
    assert selected["n_features"] > 0 and config.is_file()

    code, out, err = run(capsys, "calibrate", config, "--retain", files / "retain.csv", "--json")
    assert code == 0, err
    calibration = json.loads(out)["concepts"][0]
    assert calibration["tpr"] == 1.0, "the paper's rule keeps every target prompt"
    stored = json.loads(config.read_text())["concepts"][0]
    assert stored["threshold"] == calibration["threshold"] and stored["calibration"]["rule"] == "paper"

    code, out, err = run(capsys, "classify", config, TARGET[0], "a cat on a mat", "--json")
    assert code == 0, err
    rows = json.loads(out)["prompts"]
    assert rows[0]["edited"] and rows[0]["concepts_hit"] == ["Tom Cruise"]
    assert rows[0]["scores"]["Tom Cruise"] >= rows[0]["thresholds"]["Tom Cruise"]

    code, out, err = run(capsys, "eval", config, "--target", files / "target.txt", "--retain", files / "retain.csv", "--json")
    assert code == 0, err
    assert json.loads(out)["concepts"][0]["tpr"] == 1.0

    image = files / "side.png"
    code, out, err = run(capsys, "generate", *bundle_args(tiny_pipeline_dir, tiny_sae_dir), "--erasure", config, "--prompt", TARGET[0],
                         "--steps", 2, "--size", 32, "--side-by-side", "--no-cache", "-o", image, "--json")
    assert code == 0, err
    from PIL import Image

    width, height = Image.open(image).size
    assert width == 64 and height > 32, "two 32-px images side by side, with a header and a caption under them"
    assert json.loads(out)["images"][0]["edited"] is True

    code, out, err = run(capsys, "concept", "select", *bundle_args(tiny_pipeline_dir, tiny_sae_dir), "--concept", "Keanu Reeves",
                         "--templates", files / "templates.txt", "--retain", files / "retain.csv", "--top-n", 16, "-o", config)
    assert code == 0, err
    assert [c["name"] for c in json.loads(config.read_text())["concepts"]] == ["Tom Cruise", "Keanu Reeves"]


def test_calibrate_with_prompt_score_positions(capsys, files, tiny_pipeline_dir, tiny_sae_dir):
    config = files / "positions.json"
    code, _, err = run(capsys, "concept", "select", *bundle_args(tiny_pipeline_dir, tiny_sae_dir), "--concept", "Tom Cruise", "--method", "paper",
                       "--prompts", files / "target.txt", "--retain", files / "retain.csv", "--top-n", 16, "-o", config)
    assert code == 0, err
    code, out, err = run(capsys, "calibrate", config, "--retain", files / "retain.csv", "--json")
    assert code == 0, err
    paper_threshold = json.loads(out)["concepts"][0]["threshold"]
    before = config.read_text()
    code, _, err = run(capsys, "calibrate", config, "--retain", files / "retain.csv", "--score-positions", "prompt", "--concept", "Tom Cruise")
    assert code == 1 and "drop --concept" in err
    assert config.read_text() == before, "a refused calibration leaves the file as it was"
    code, out, err = run(capsys, "calibrate", config, "--retain", files / "retain.csv", "--score-positions", "prompt", "--json")
    assert code == 0, err
    stored = json.loads(config.read_text())
    assert stored["score_positions"] == "prompt"
    assert stored["concepts"][0]["threshold"] != paper_threshold and json.loads(out)["concepts"][0]["tpr"] == 1.0
    code, out, err = run(capsys, "classify", config, TARGET[0], "--json")
    assert code == 0, err
    assert json.loads(out)["prompts"][0]["edited"], "the classifier scores as calibration did"


def test_manual_curation_on_top_of_the_selection(capsys, files, tiny_pipeline_dir, tiny_sae_dir):
    config = files / "curated.json"
    code, _, err = run(capsys, "concept", "select", *bundle_args(tiny_pipeline_dir, tiny_sae_dir), "--concept", "Tom Cruise",
                       "--prompts", files / "target.txt", "--retain", files / "retain.csv", "--top-n", 16, "-o", config)
    assert code == 0, err
    selected = [f["id"] for f in json.loads(config.read_text())["concepts"][0]["features"]]
    extra = next(i for i in range(256) if i not in selected)
    code, out, err = run(capsys, "concept", "edit", config, "--concept", "Tom Cruise", "--remove", selected[0], "--add", extra,
                         "--strength", f"{extra}=-4", "--label", f"{extra}=hand-picked", "--json")
    assert code == 0, err
    features = {f["id"]: f for f in json.loads(config.read_text())["concepts"][0]["features"]}
    assert selected[0] not in features and features[extra] == {"id": extra, "strength": -4.0, "label": "hand-picked"}
    before = config.read_text()
    code, out, err = run(capsys, "concept", "edit", config, "--concept", "Tom Cruise", "--add", 256)
    assert code == 1 and "out of range" in err
    assert config.read_text() == before, "a refused edit leaves the file as it was"


def test_sae_info_and_convert(capsys, tmp_path, tiny_sae_dir):
    code, out, err = run(capsys, "sae", "info", tiny_sae_dir, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["format"], info["n_latents"], info["k"]) == ("native", 256, 8)
    for target in ["itd", "saelens"]:
        code, out, err = run(capsys, "sae", "convert", tiny_sae_dir, "-o", tmp_path / target, "--to", target, "--json")
        assert code == 0, err
        code, out, _ = run(capsys, "sae", "info", tmp_path / target, "--json")
        assert json.loads(out)["fingerprint"] == info["fingerprint"]


def test_list_options_accumulate_when_repeated():
    from itd_cli.main import build_parser

    args = build_parser().parse_args(["generate", "--prompt", "a red circle", "--prompt", "a blue star", "a cat", "-o", "x.png"])
    assert args.prompt == ["a red circle", "a blue star", "a cat"], "a repeated --prompt must not drop the earlier ones"
    args = build_parser().parse_args(["calibrate", "c.json", "--retain", "r1.txt", "--retain", "r2.txt"])
    assert args.retain == ["r1.txt", "r2.txt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "missing.json", "a cat"], "erasure config not found"),
        (["sae", "info", "/nonexistent/sae"], "nonexistent"),
        (["concept", "select", "--bundle", "/nonexistent/sd", "--sae", "x", "--concept", "x", "--prompts", "x.txt", "--retain", "y.txt", "-o", "o.json"], "not found"),
    ],
)
def test_errors_go_to_stderr_with_a_nonzero_exit(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()


def test_bad_config_version_leaves_the_file_alone(capsys, files):
    bad = files / "v7.json"
    bad.write_text(json.dumps({"schema_version": 7}))
    code, _, err = run(capsys, "calibrate", bad, "--retain", files / "retain.csv")
    assert code == 1 and "unknown schema_version 7" in err
    assert json.loads(bad.read_text()) == {"schema_version": 7}


def test_hub_id_not_cached_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "t.txt").write_text("a\n")
    code, out, err = run(capsys, "concept", "select", "--bundle", "CompVis/stable-diffusion-v1-4", "--sae", "x/y", "--concept", "x",
                         "--prompts", tmp_path / "t.txt", "--retain", tmp_path / "t.txt", "-o", tmp_path / "o.json")
    assert code == 1
    assert "CompVis/stable-diffusion-v1-4" in err and "local folder" in err and "Traceback" not in err


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "itd_cli", "classify", str(tmp_path / "none.json"), "a cat", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert "erasure config not found" in result.stderr


@pytest.mark.parametrize(("path", "value"), [(("concepts", 0, "threshold"), "NaN"), (("concepts", 0, "threshold"), "Infinity"),
                                             (("concepts", 0, "features", 0, "strength"), "-Infinity"), (("concepts", 0, "features", 0, "strength"), "NaN")])
def test_non_finite_numbers_in_a_config_are_refused_not_ignored(capsys, files, calibrated, path, value):
    data = json.loads(calibrated.read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "__VALUE__"
    hostile = files / "hostile.json"
    text = json.dumps(data).replace('"__VALUE__"', value)  # Python's json writes and reads bare NaN/Infinity
    hostile.write_text(text)
    for argv in (["classify", hostile, TARGET[0], "--json"], ["calibrate", hostile, "--retain", files / "retain.csv"]):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == "" and "Traceback" not in err
        assert ".".join(map(str, path)) in err and "finite" in err
        assert hostile.read_text() == text, "the refused file is left as it was"


def test_json_output_is_strict_json():
    import argparse

    from itd_cli.common import emit
    from itd_core.errors import ItdError

    with pytest.raises(ItdError, match="non-finite"):
        emit(argparse.Namespace(json=True), {"score": float("nan")}, "")


def test_two_selects_into_one_config_at_once_keep_both_concepts(files, tiny_pipeline_dir, tiny_sae_dir, tmp_path):
    config = tmp_path / "shared.json"
    (tmp_path / "pitt.txt").write_text("A portrait of Brad Pitt\nBrad Pitt in an official photo\n")
    (tmp_path / "retain.txt").write_text("a cat on a mat\na house by a lake\n")
    commands = [[sys.executable, "-m", "itd_cli", "concept", "select", *map(str, bundle_args(tiny_pipeline_dir, tiny_sae_dir)), "--concept", name,
                 "--prompts", str(prompts), "--retain", str(tmp_path / "retain.txt"), "--top-n", "16", "--no-phrasings", "-o", str(config)]
                for name, prompts in [("Tom Cruise", files / "target.txt"), ("Brad Pitt", tmp_path / "pitt.txt")]]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for command in commands]
    for process in running:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    assert sorted(c["name"] for c in json.loads(config.read_text())["concepts"]) == ["Brad Pitt", "Tom Cruise"]


def test_invalid_utf8_on_the_command_line_is_an_error_message(calibrated):
    result = subprocess.run([sys.executable.encode(), b"-m", b"itd_cli", b"classify", str(calibrated).encode(), b"A portrait of \xff\xfe"],
                            capture_output=True, timeout=120)
    assert result.returncode == 1 and result.stdout == b""
    assert b"lone surrogate" in result.stderr and b"Traceback" not in result.stderr


def test_a_read_only_folder_is_an_error_message_and_the_config_survives(capsys, files, calibrated, tmp_path):
    import os

    folder = tmp_path / "readonly"
    folder.mkdir()
    config = folder / "erasure.json"
    config.write_text(calibrated.read_text())
    before = config.read_text()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): a read-only folder cannot be made here")
        code, out, err = run(capsys, "calibrate", config, "--retain", files / "retain.csv")
    finally:
        folder.chmod(0o755)
    assert code == 1 and "Traceback" not in err and "error: " in err
    assert config.read_text() == before


def test_a_full_disk_is_an_error_message_and_the_config_survives(files, calibrated, tmp_path):
    import resource
    import signal

    config = tmp_path / "erasure.json"
    config.write_text(calibrated.read_text())
    before = config.read_text()

    def small_file_limit():  # writes past 100 bytes fail (EFBIG) as on a full disk, for root too
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    result = subprocess.run([sys.executable, "-m", "itd_cli", "calibrate", str(config), "--retain", str(files / "retain.csv")],
                            capture_output=True, text=True, timeout=300, preexec_fn=small_file_limit)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: cannot write {config}: File too large; the file was left as it was" in result.stderr
    assert config.read_text() == before and not list(tmp_path.glob(".erasure.json.*.tmp")), "no half-written file left"


def test_sae_convert_keeps_the_stored_dtype_and_info_reports_it(capsys, tmp_path, tiny_sae_dir):
    code, _, err = run(capsys, "sae", "convert", tiny_sae_dir, "-o", tmp_path / "half", "--to", "native", "--dtype", "fp16")
    assert code == 0, err
    for target in ["itd", "saelens"]:
        code, _, err = run(capsys, "sae", "convert", tmp_path / "half", "-o", tmp_path / target, "--to", target)
        assert code == 0, err
        code, out, _ = run(capsys, "sae", "info", tmp_path / target, "--json")
        assert json.loads(out)["dtype"] == "float16", "convert keeps the source's dtype unless --dtype says otherwise"


def test_sae_train_does_not_take_sae_options_it_would_ignore(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sae", "train", "--prompts", "x.txt", "--latents", "8", "--k", "2", "-o", "out", "--sae", "elsewhere"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --sae elsewhere" in capsys.readouterr().err


def test_the_bf16_screen_classifies_as_fp32(capsys, calibrated, monkeypatch):
    """--bf16-screen: the same decisions and scores (to fp32 rounding) as plain fp32; with --dtype bf16 a clear error."""
    from itd_core import sae as sae_module

    monkeypatch.setattr(sae_module, "SCREEN_CANDIDATES", 64)  # below the tiny SAE's 256 latents, so the screen runs
    prompts = [TARGET[0], "a cat on a mat", "Emma Stone in an official photo"]
    code, out, err = run(capsys, "classify", calibrated, *prompts, "--json")
    assert code == 0, err
    code, screened_out, err = run(capsys, "classify", calibrated, *prompts, "--json", "--bf16-screen")
    assert code == 0, err
    plain, screened = json.loads(out)["prompts"], json.loads(screened_out)["prompts"]
    assert [r["edited"] for r in screened] == [r["edited"] for r in plain]
    for a, b in zip(plain, screened):
        assert b["scores"]["Tom Cruise"] == pytest.approx(a["scores"]["Tom Cruise"], rel=1e-5)
    code, out, err = run(capsys, "classify", calibrated, TARGET[0], "--dtype", "bf16", "--bf16-screen")
    assert code != 0 and "--bf16-screen serves an fp32 SAE" in err
