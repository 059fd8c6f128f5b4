"""`rnnkit predict` on a captioning checkpoint. Documented: "Read lines (a file or stdin),
write one prediction per line" (CLI help); caption task: "predict reads one image path per line and
writes its caption". Checked: one caption per image, in input order; each caption is what the model's
greedy decoding gives for that image (the Python path), made of vocabulary words only — no <pad>, <bos>,
<eos> — stopping at the first EOS and never longer than the task's max_length; and one output line per
input line."""
import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.data import load_builtin
from rnnkit.data.captions import png_bytes
from rnnkit.train.tasks import load_trained

WORDS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny checkpoints: one trained 100 steps (as tests/cli/test_cli_tasks.py), one trained 1 step (decodes junk, may never emit EOS)."""
    root = tmp_path_factory.mktemp("cap")
    saved = torch.get_num_threads()
    outs = {}
    for name, steps in (("good", 100), ("raw", 1)):
        code = main(["train", "caption", "--data", "builtin:digits", "--max-steps", str(steps), "--no-progress", "--json", "--out", str(root / name)])
        assert code == 0
        outs[name] = root / name / "checkpoint"
    torch.set_num_threads(saved)
    strips = load_builtin("digits")["valid"]
    paths = []
    for i in range(5):
        p = root / f"img{i}.png"
        p.write_bytes(png_bytes((strips.images[i, 0].numpy() * 255).round().astype("uint8")))
        paths.append(p)
    return outs, paths, strips


def python_captions(ckpt, paths):
    """The Python path: the checkpoint's model, greedy, on the same (PNG-quantised) images."""
    import matplotlib.image as mpimg

    task, model, _ = load_trained(ckpt)
    imgs = torch.stack([torch.from_numpy(np.asarray(mpimg.imread(p), dtype=np.float32))[None] for p in paths])
    with torch.no_grad():
        dec = model.generate(imgs, method="greedy", max_length=task.max_length)
    return task, dec


@pytest.mark.parametrize("name", ["good", "raw"])
def test_one_caption_per_image_matching_the_model(tmp_path, capsys, trained, name):
    outs, paths, strips = trained
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in paths))
    code, pred, err = cli(capsys, "predict", outs[name], "--input", tmp_path / "list.txt")
    assert code == 0, err
    lines = pred.split("\n")
    assert lines[-1] == "" and len(lines[:-1]) == len(paths)  # one line per image, newline-terminated
    task, dec = python_captions(outs[name], paths)
    vocab = set(task.tokenizer.vocab.tokens)
    for row, line in enumerate(lines[:-1]):
        toks = line.split()
        ids = dec.tokens[row].tolist()
        # the CLI line is exactly the decoded tokens up to the first EOS, specials dropped
        eos = task.tokenizer.vocab.eos_id
        upto = ids[:ids.index(eos)] if eos in ids else ids
        assert toks == [task.tokenizer.vocab.tokens[i] for i in upto if i not in (0, 2, 3)]
        assert set(toks) <= vocab - {"<pad>", "<bos>", "<eos>"}
        assert len(toks) <= task.max_length
        assert int(dec.lengths[row]) <= task.max_length
    if name == "good":  # a trained model writes digit words (3 per strip)
        assert all(set(line.split()) <= WORDS and line for line in lines[:-1])
        correct = sum(line == strips.captions[i] for i, line in enumerate(lines[:-1]))
        assert correct >= 1, (lines, strips.captions[:5])


def test_stdin_and_output_file(tmp_path, capsys, trained, monkeypatch):
    import io
    import sys

    outs, paths, _ = trained
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in paths[:2]))
    code, expected, _ = cli(capsys, "predict", outs["good"], "--input", tmp_path / "list.txt")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("".join(f"{p}\n" for p in paths[:2]).encode())))
    code, pred, err = cli(capsys, "predict", outs["good"], "--output", tmp_path / "o.txt")
    assert code == 0 and pred == "" and (tmp_path / "o.txt").read_text() == expected


def test_blank_line_keeps_one_output_line_per_input_line(tmp_path, capsys, trained):
    """CLI help: 'write one prediction per line'. Other tasks (forecast, tag) answer a blank input line
    with a blank output line, keeping lines aligned; the caption task drops it."""
    outs, paths, _ = trained
    (tmp_path / "list.txt").write_text(f"{paths[0]}\n\n{paths[1]}\n")
    code, pred, err = cli(capsys, "predict", outs["good"], "--input", tmp_path / "list.txt")
    assert code == 0, err
    assert len(pred.splitlines()) == 3, pred.splitlines()


def test_an_image_of_another_size_is_named_with_exit_code_2(tmp_path, capsys, trained):
    """Among images of the model's size, one of another size was a RuntimeError from torch.stack naming no
    file (exit 1); it is a data error naming the file, with both shapes."""
    outs, paths, _ = trained
    other = tmp_path / "small.png"
    other.write_bytes(png_bytes(np.zeros((4, 5), dtype="uint8")))
    (tmp_path / "list.txt").write_text(f"{paths[0]}\n{other}\n")
    code, pred, err = cli(capsys, "predict", outs["good"], "--input", tmp_path / "list.txt")
    assert code == 2 and pred == "" and f"{other}: image: images of shape (C, H, W) = (1, 4, 5)" in err, err


def _biased_checkpoint(src, dst, eos_bias):
    """A copy of checkpoint ``src`` whose output layer gives <eos> the logit bias ``eos_bias``."""
    from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint

    c = load_checkpoint(src, trainer=False)
    w = dict(c.weights)
    b = w["decoder.output.bias"].clone()
    b[c.config["eos_id"]] = eos_bias
    w["decoder.output.bias"] = b
    save_checkpoint(dst, model_type=c.model_type, config=c.config, weights=w, vocab=c.vocab, task=c.task,
                    step=c.meta.get("step", 0))
    return dst


@pytest.mark.parametrize("eos_bias,check", [
    (-1e4, "never"),   # the model never ends a caption: it is cut at max_length tokens, no <eos> shown
    (1e4, "first"),    # the model ends at once: an empty caption, still one line for the image
])
def test_ends(tmp_path, capsys, trained, eos_bias, check):
    outs, paths, _ = trained
    ckpt = _biased_checkpoint(outs["good"], tmp_path / "ck", eos_bias)
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in paths))
    code, pred, err = cli(capsys, "predict", ckpt, "--input", tmp_path / "list.txt")
    assert code == 0, err
    lines = pred.split("\n")[:-1]
    assert len(lines) == len(paths)
    task, _, _ = load_trained(ckpt)
    for line in lines:
        toks = line.split()
        assert "<eos>" not in toks and "<pad>" not in toks and "<bos>" not in toks
        if check == "never":
            assert len(toks) == task.max_length == 2 * 3 + 5  # 'twice the longest training caption + 5'
        else:
            assert line == ""
