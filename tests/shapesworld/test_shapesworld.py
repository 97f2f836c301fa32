"""ShapesWorld: the world, micro trainings (+ resume), the committed detector and pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from shapesworld import detector as D
from shapesworld import world

torch.set_num_threads(1)  # the dev box's 2 cores are shared; one thread avoids OpenMP stalls


# ----------------------------------------------------------------------------- the world

def test_world_is_deterministic_and_varied():
    a, b = world.generate(40, seed=7), world.generate(40, seed=7)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert [s.caption for s in world.generate(40, seed=8)] != [s.caption for s in a]
    assert world.generate(5, seed=7, start=10)[0].caption == a[10].caption
    s = a[0]
    assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
    assert {"kind", "shape", "colour", "artist", "identity", "unsafe", "mentions"} <= set(s.labels)


def test_captions_vary_for_one_concept():
    many = world.generate(600, seed=1)
    kinds = {s.labels["kind"] for s in many}
    assert kinds == set(world.KINDS)
    name = world.IDENTITIES[0]
    forms = {s.caption.replace(name, "<p>") for s in many if s.labels["identity"] == name}
    assert len(forms) >= 4
    red = {s.caption for s in many if s.labels["kind"] == "object" and s.labels["colour"] == "red"}
    assert any("scarlet" in c.lower() for c in red) and any("red" in c.lower() for c in red)


def test_name_lists_are_large_enough():
    assert len(world.SHAPES) >= 7 and len(world.COLOURS) >= 6
    assert len(world.ARTISTS) >= 8 and len(set(world.ARTIST_STYLES.values())) == len(world.ARTISTS)
    assert len(world.IDENTITIES) >= 12
    looks = {(i.shape, i.colour) for i in world.IDENTITY_LIST}
    assert len(looks) == len(world.IDENTITY_LIST)  # every character is distinguishable
    sets = world.erasure_prompts()
    assert set(sets["identity"]) == set(world.IDENTITIES) and set(sets["artist"]) == set(world.ARTISTS)
    assert all(len(v) == 5 for v in sets["identity"].values())
    assert sets["unsafe"] and sets["retain"]


def test_fine_styles_are_coarse_enough_for_the_vae():
    """Pixel blocks are 8 px (two latent pixels): 4-px blocks and 4-px dots did not survive the VAE."""
    samples = world.generate(400, seed=5)
    pixel = next(s.image for s in samples if s.labels["style"] == "pixel").astype(float)
    blocks = pixel.reshape(8, 8, 8, 8, 3)
    within_block = np.abs(blocks - blocks.mean(axis=(1, 3), keepdims=True)).max()
    assert within_block < 12 < pixel.max() - pixel.min()  # flat blocks up to the sensor noise (sigma 2)
    dots = next(s.image for s in samples if s.labels["style"] == "dots").astype(float)
    phase = dots.reshape(8, 8, 8, 8, 3).mean(axis=(0, 2))  # the mean 8x8 cell
    assert np.abs(phase - np.roll(phase, (4, 4), axis=(0, 1))).max() > 10  # period 8: not periodic in 4 px


def test_identity_portrait():
    s = world.render_identity(world.IDENTITIES[3])
    assert s.labels["identity"] == world.IDENTITIES[3] and s.labels["style"] is None
    with pytest.raises(ValueError, match="unknown identity"):
        world.render_identity("Nobody Atall")


# ----------------------------------------------------------------------------- micro trainings

def _ckpt_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["step"]


def _stored_fp16(folder: Path) -> bool:
    from safetensors.torch import load_file

    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    return all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())


def test_micro_detector_training_resumes(tmp_path, capsys, monkeypatch):
    from shapesworld import train_detector

    args = ["--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "det"), "--n-train", "48", "--n-val", "16",
            "--batch", "8", "--width", "4", "--ckpt-every", "2", "--log-every", "1", "--threads", "1"]
    train_detector.main(args + ["--steps", "2"])
    assert _ckpt_step(tmp_path / "run" / "ckpt.pt") == 2
    train_detector.main(args + ["--steps", "3"])
    assert "resumed" in capsys.readouterr().out
    assert _ckpt_step(tmp_path / "run" / "ckpt.pt") == 3
    model = D.load(tmp_path / "det")
    out = D.detect(world.generate(3, seed=0)[0].image, model=model)
    assert set(out[0]) >= {"shape", "colour", "artist", "identity", "unsafe", "shape_conf"}
    # --out '' measures without writing weights anywhere (not into the working directory)
    monkeypatch.chdir(tmp_path)
    no_out = [a if a != str(tmp_path / "det") else "" for a in args]
    assert "val_accuracy_clean" in train_detector.main(no_out + ["--steps", "3"])
    assert not (tmp_path / D.WEIGHTS_NAME).exists() and "wrote" not in capsys.readouterr().out


def test_micro_vae_and_unet_training_resume(tmp_path, capsys):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from shapesworld import train_unet, train_vae

    vae_args = ["--run-dir", str(tmp_path / "vrun"), "--out", str(tmp_path / "pipe" / "vae"), "--channels", "8", "16",
                "16", "--groups", "8", "--n-train", "32", "--n-val", "8", "--batch", "4", "--ckpt-every", "1",
                "--log-every", "1", "--threads", "1"]
    train_vae.main(vae_args + ["--steps", "2"])
    train_vae.main(vae_args + ["--steps", "3"])
    assert "resumed" in capsys.readouterr().out
    assert _ckpt_step(tmp_path / "vrun" / "ckpt.pt") == 3
    vae = AutoencoderKL.from_pretrained(tmp_path / "pipe" / "vae")
    assert vae.config.scaling_factor > 0 and _stored_fp16(tmp_path / "pipe" / "vae")

    # decoder fine-tuning keeps the encoder, hence the latent space and its scale, and changes the decoder
    train_vae.main(["--run-dir", str(tmp_path / "ftrun"), "--out", str(tmp_path / "ft"), "--init", str(tmp_path / "pipe" / "vae"),
                    "--decoder-only", "--edge-weight", "1", "--crop", "64", "--n-train", "8", "--n-val", "4", "--batch", "2",
                    "--steps", "2", "--threads", "1"])
    tuned = AutoencoderKL.from_pretrained(tmp_path / "ft")
    assert tuned.config.scaling_factor == vae.config.scaling_factor
    for name, frozen in [("encoder", vae.encoder), ("quant_conv", vae.quant_conv), ("decoder", vae.decoder)]:
        same = all(torch.equal(a, b) for a, b in zip(frozen.state_dict().values(), getattr(tuned, name).state_dict().values()))
        assert same == (name != "decoder"), name
    # ... so the UNet's latent cache, keyed by the encoder, stays valid
    from shapesworld.pipeline import PIPELINE_DIR

    assert train_unet.encoder_key(tmp_path / "ft") == train_unet.encoder_key(tmp_path / "pipe" / "vae")
    assert train_unet.encoder_key(tmp_path / "ft") != train_unet.encoder_key(PIPELINE_DIR / "vae")
    with pytest.raises(SystemExit):
        train_vae.main(["--run-dir", str(tmp_path / "bad"), "--decoder-only"])
    assert "--decoder-only needs --init" in capsys.readouterr().err

    unet_args = ["--run-dir", str(tmp_path / "urun"), "--vae", str(tmp_path / "pipe" / "vae"),
                 "--out", str(tmp_path / "pipe"), "--channels", "8", "16", "16", "--groups", "8", "--head-dim", "8",
                 "--n-train", "16", "--batch", "4", "--ckpt-every", "1", "--log-every", "1", "--threads", "1"]
    train_unet.main(unet_args + ["--steps", "2"])
    train_unet.main(unet_args + ["--steps", "3", "--style-weight", "pixel=4"])  # resumes with style-weighted draws
    assert "resumed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train_unet.main(unet_args + ["--style-weight", "blurry=2"])
    assert "expected STYLE=W" in capsys.readouterr().err
    assert _ckpt_step(tmp_path / "urun" / "ckpt.pt") == 3
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "pipe" / "unet")
    assert unet.config.cross_attention_dim == 384 and _stored_fp16(tmp_path / "pipe" / "unet")

    # the micro models assemble into a working pipeline
    from shapesworld.pipeline import load_pipeline, write_static_components

    write_static_components(tmp_path / "pipe")
    pipe = load_pipeline(folder=tmp_path / "pipe")
    img = pipe("a red circle", num_inference_steps=2, height=64, width=64, output_type="np").images
    assert img.shape == (1, 64, 64, 3)


# ----------------------------------------------------------------------------- committed assets

def test_committed_detector_is_accurate_on_fresh_images():
    samples = world.generate(300, seed=31337)
    det = D.detect(np.stack([s.image for s in samples]))
    from shapesworld.evaluate import accuracy_by_value, score

    labels = [s.labels for s in samples]
    acc = score(det, labels, only_mentioned=False)
    for head in ("shape", "colour", "artist", "identity", "unsafe"):
        assert acc[head] >= 0.9, (head, acc)
    # per-artist accuracy: one entry per artist a caption names, weighted back to the overall figure
    per_artist = accuracy_by_value(det, labels, "artist")
    named = [s.labels["artist"] for s in samples if "artist" in s.labels["mentions"]]
    assert set(per_artist) == set(named)
    weighted = sum(per_artist[a] * named.count(a) for a in per_artist) / len(named)
    assert weighted == pytest.approx(score(det, labels)["artist"])


def test_missing_detector_asset_names_the_file(tmp_path):
    from shapesworld.errors import AssetError

    with pytest.raises(AssetError, match=r"config\.json.*git checkout"):
        D.load(tmp_path)


PIPE = Path(__file__).resolve().parents[2] / "shapesworld" / "assets" / "pipeline"


def test_committed_pipeline_generates_for_any_prompt():
    from shapesworld.pipeline import load_pipeline, sampling_scheduler

    pipe = load_pipeline()
    assert pipe.tokenizer.model_max_length == 24 and pipe.text_encoder.config.use_attention_mask
    # the committed scheduler is the one write_static_components writes (DPM++ 2M, "leading" spacing)
    assert type(pipe.scheduler) is type(sampling_scheduler()) and pipe.scheduler.config.timestep_spacing == "leading"
    prompts = ["A portrait of Mira Castellane", "", "zxqv blorfing quandlewump ~~ 42"]
    out = pipe(prompts, num_inference_steps=4, guidance_scale=5.0, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (3, 64, 64, 3) and np.isfinite(out).all()
    assert out.std() > 0.01


def test_missing_or_corrupt_pipeline_asset_names_the_file(tmp_path):
    from shapesworld.errors import AssetError
    from shapesworld.pipeline import load_pipeline

    copy = tmp_path / "pipeline"
    shutil.copytree(PIPE, copy)
    (copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(AssetError, match=r"unet/diffusion_pytorch_model\.safetensors.*git checkout"):
        load_pipeline(folder=copy)
    shutil.copy(PIPE / "unet" / "diffusion_pytorch_model.safetensors", copy / "unet")
    (copy / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AssetError, match=r"vae.*git checkout"):
        load_pipeline(folder=copy)
