"""Checkpoints: round trip without pickle, atomic saves (a full disk mid-save keeps the previous
checkpoint), and one-line errors for a truncated file, another model type and a newer format."""
from __future__ import annotations

import errno
import hashlib
import json

import pytest
import torch
from torch import nn

from rnnkit.train import checkpoint as ck
from rnnkit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def tied_model():
    m = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7))
    m[1].weight = m[0].weight  # weight tying: one tensor under two names
    return m


def save(root, step, model, **kw):
    return save_checkpoint(root, model_type="tiny", config={"h": 4}, weights=model.state_dict(),
                           vocab={"tokens": ["a", "b"]}, step=step, **kw)


def test_round_trip_with_tied_weights_and_optimizer(tmp_path):
    m = tied_model()
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.tensor([1, 2])).sum().backward()
    opt.step()
    meta, tensors = ck.optimizer_state(opt)
    snap = save(tmp_path / "c", 1, m, trainer={"optimizer": meta}, trainer_tensors=tensors)
    assert sorted(p.name for p in snap.iterdir()) == ["config.json", "model.safetensors", "trainer.json",
                                                      "trainer.safetensors", "vocab.json"]
    c = load_checkpoint(tmp_path / "c", expected_type="tiny")
    assert c.vocab == {"tokens": ["a", "b"]} and c.config == {"h": 4}
    m2 = tied_model()
    m2.load_state_dict(c.weights)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.AdamW(m2.parameters(), lr=0.5)
    ck.load_optimizer_state(opt2, c.trainer["optimizer"], c.trainer_tensors)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 0.1
    for k in s1["state"][0]:
        assert torch.equal(s1["state"][0][k], s2["state"][0][k])
    # no pickle anywhere: every file is JSON or safetensors
    for f in snap.iterdir():
        assert f.suffix in (".json", ".safetensors")


def test_full_disk_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    m = tied_model()
    save(tmp_path / "c", 1, m)
    before = load_checkpoint(tmp_path / "c")
    real = ck._write_bytes
    calls = {"n": 0}

    def full_disk(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the second file: half of it reaches the disk, then ENOSPC
            path.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ck, "_write_bytes", full_disk)
    with torch.no_grad():
        m[0].weight.add_(1.0)
    with pytest.raises(CheckpointError, match="No space left on device; the previous checkpoint is unchanged"):
        save(tmp_path / "c", 2, m)
    after = load_checkpoint(tmp_path / "c")
    assert after.meta["step"] == 1
    assert torch.equal(after.weights["0.weight"], before.weights["0.weight"])
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".tmp")] == []


def test_full_disk_while_moving_the_pointer(tmp_path, monkeypatch):
    m = tied_model()
    save(tmp_path / "c", 1, m)
    real = ck._write_bytes

    def fail_pointer(path, data):
        if "latest" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ck, "_write_bytes", fail_pointer)
    with pytest.raises(CheckpointError):
        save(tmp_path / "c", 2, m)
    assert load_checkpoint(tmp_path / "c").meta["step"] == 1
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["latest", "step-00000001"]


def test_new_save_replaces_old_snapshot(tmp_path):
    m = tied_model()
    save(tmp_path / "c", 1, m)
    save(tmp_path / "c", 2, m)
    save(tmp_path / "c", 2, m)  # the same step again
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["latest", "step-00000002.1"]
    assert load_checkpoint(tmp_path / "c").meta["step"] == 2


def test_a_model_config_dataclass_is_saved_and_a_model_for_weights_is_named(tmp_path):
    """``config=model.config`` failed inside json; ``weights=model`` with an AttributeError."""
    from rnnkit.models import LanguageModel

    model = LanguageModel(vocab_size=7, embed_size=4, hidden_size=4)
    save_checkpoint(tmp_path / "c", model_type="language_model", config=model.config, weights=model.state_dict())
    loaded = load_checkpoint(tmp_path / "c")
    assert loaded.config["vocab_size"] == 7 and LanguageModel.from_config(loaded.config).config == model.config
    with pytest.raises(TypeError, match=r"weights must map names to tensors \(model.state_dict\(\)\), got LanguageModel"):
        save_checkpoint(tmp_path / "d", model_type="language_model", config=model.config, weights=model)


def test_truncated_weights(tmp_path):
    snap = save(tmp_path / "c", 1, tied_model())
    f = snap / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model.safetensors is truncated or damaged: \d+ bytes, expected \d+"):
        load_checkpoint(tmp_path / "c")


@pytest.mark.parametrize("name", ["model.safetensors", "vocab.json", "trainer.json", "trainer.safetensors"])
def test_a_damaged_file_of_the_same_size_is_found(tmp_path, name):
    """Bytes overwritten in place (the size kept) loaded silently — NaNs in the weights, a model that
    predicted one class for everything; each file's SHA-256 in config.json finds them."""
    snap = save_checkpoint(tmp_path / "c", model_type="m", config={}, weights={"w": torch.ones(64)}, step=1,
                           vocab={"tokens": ["a", "b"]}, trainer={"x": 1}, trainer_tensors={"t": torch.ones(64)})
    f = snap / name
    data = bytearray(f.read_bytes())
    data[-3] = (data[-3] + 1) % 256 if name.endswith(".json") else 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{name} is damaged: its contents do not match the SHA-256"):
        load_checkpoint(tmp_path / "c")


def test_a_checkpoint_without_digests_still_loads(tmp_path):
    """Checkpoints written before the digests were recorded are read as before."""
    snap = save(tmp_path / "c", 1, tied_model())
    header = json.loads((snap / "config.json").read_text())
    del header["sha256"]
    (snap / "config.json").write_text(json.dumps(header))
    assert load_checkpoint(tmp_path / "c").meta["step"] == 1


@pytest.mark.parametrize("aliases,problem", [('{"x": "nope"}', "'x' names the missing tensor 'nope'"),
                                             ("{oops", "Expecting property name")])
def test_damaged_list_of_shared_tensors(tmp_path, aliases, problem):
    from safetensors.torch import load, save

    snap = save_checkpoint(tmp_path, model_type="m", config={}, weights={"w": torch.ones(2)}, step=1)
    path = snap / "model.safetensors"
    data = save(load(path.read_bytes()), metadata={"format": "rnnkit-checkpoint", "model_type": "m",
                                                    "aliases": aliases})
    path.write_bytes(data)
    header = json.loads((snap / "config.json").read_text())
    header["files"]["model.safetensors"] = len(data)  # consistent sizes and digest: only the aliases are wrong
    header["sha256"]["model.safetensors"] = hashlib.sha256(data).hexdigest()
    (snap / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match="is corrupt: its list of shared tensors: " + problem):
        load_checkpoint(tmp_path)


def test_truncated_config(tmp_path):
    snap = save(tmp_path / "c", 1, tied_model())
    f = snap / "config.json"
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="config.json is corrupt or truncated"):
        load_checkpoint(tmp_path / "c")


def test_other_model_type_and_newer_format(tmp_path):
    snap = save(tmp_path / "c", 1, tied_model())
    with pytest.raises(CheckpointError, match="holds a 'tiny' model, expected 'language_model'"):
        load_checkpoint(tmp_path / "c", expected_type="language_model")
    header = json.loads((snap / "config.json").read_text())
    header["format_version"] = ck.FORMAT_VERSION + 1
    (snap / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match=f"format version {ck.FORMAT_VERSION + 1}, newer than this rnnkit"):
        load_checkpoint(tmp_path / "c")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an rnnkit checkpoint"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="is a file"):
        load_checkpoint(tmp_path / "x.txt")


def test_a_listed_file_that_is_missing_is_named(tmp_path):
    snap = save(tmp_path / "c", 1, tied_model())
    (snap / "vocab.json").unlink()
    with pytest.raises(CheckpointError, match=r"is incomplete: vocab.json is missing \(expected the files config.json "
                                              r"lists: model.safetensors, vocab.json; found config.json, model.safetensors\)"):
        load_checkpoint(tmp_path / "c")
    c = load_checkpoint(tmp_path / "c", require_files=False)  # for `rnnkit info`: the files as found on disk
    assert c.vocab is None
    assert c.files == {"config.json": (snap / "config.json").stat().st_size,
                       "model.safetensors": (snap / "model.safetensors").stat().st_size, "vocab.json": "missing"}


def test_missing_trainer_state_with_require_files_off(tmp_path):
    m = tied_model()
    opt = torch.optim.AdamW(m.parameters())
    meta, tensors = ck.optimizer_state(opt)
    snap = save(tmp_path / "c", 1, m, trainer={"step": 1, "optimizer": meta}, trainer_tensors=tensors)
    (snap / "trainer.safetensors").unlink()
    with pytest.raises(CheckpointError, match="trainer.safetensors is missing"):
        load_checkpoint(tmp_path / "c", trainer=False)
    c = load_checkpoint(tmp_path / "c", require_files=False)
    assert not c.trainer and c.files["trainer.safetensors"] == "missing"


def test_weights_mismatch_names_the_weight_and_both_shapes(tmp_path):
    save(tmp_path / "c", 1, tied_model())
    c = load_checkpoint(tmp_path / "c")
    bigger = nn.Sequential(nn.Embedding(7, 5), nn.Linear(5, 7))
    with pytest.raises(CheckpointError, match=r"does not match its model: 0.weight has shape \(7, 4\) in the file, "
                                              r"the model expects \(7, 5\)$"):
        ck.load_weights(bigger, c)
    assert ck.weights_mismatch({"a": torch.zeros(3), "b": torch.zeros(2)}, {"a": torch.zeros(3)}) == \
        "the file has no weight 'b', which the model expects"
    assert ck.weights_mismatch({"a": torch.zeros(3)}, {"a": torch.zeros(3), "x": torch.zeros(1), "y": torch.zeros(1)}) == \
        "the file has a weight 'x' that the model does not (and 1 more)"
    same = tied_model()
    ck.load_weights(same, c)
    torch.testing.assert_close(same[0].weight, c.weights["0.weight"])


def test_step_of_weights_alone_and_an_edited_header_are_read_right(tmp_path):
    """A checkpoint of weights alone (``best/``) reported step 0; a config.json edited to hold no model_type,
    digests that are not strings or a format_version of 0 loaded (a KeyError, or no integrity check)."""
    path = save(tmp_path / "c", 12, tied_model())
    assert load_checkpoint(tmp_path / "c").step == 12 and load_checkpoint(tmp_path / "c", trainer=False).step == 12
    original = json.loads((path / "config.json").read_text())
    for edit, message in (({"model_type": None}, 'has no "model_type"'),
                          ({"sha256": {"model.safetensors": 5}}, '"sha256" must map file names to digests'),
                          ({"format_version": 0}, "has no valid format_version"),
                          ({"format_version": True}, "has no valid format_version")):
        (path / "config.json").write_text(json.dumps(original | edit))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / "c")


def test_a_misspelt_device_is_named_not_run_on_the_cpu():
    from rnnkit.train.distributed import init
    from rnnkit.train.options import OptionError

    for bad in ("gpu", "cdua", "mps", "cpu:0"):
        with pytest.raises(OptionError, match=f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got '{bad}'"):
            init(bad)
    assert init(torch.device("cpu"))[1] == torch.device("cpu")  # (a torch.device failed on .startswith)
