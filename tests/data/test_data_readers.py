"""Readers: what they return, the header rules, writer → reader round trips, and one-line errors
that name the file, the line and what was expected."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.data import (
    Captions, DataError, Series, holdout, read_captions, read_conll, read_labelled, read_parallel, read_series,
    read_text, write_captions, write_conll, write_labelled, write_parallel, write_series,
)

READERS = [read_text, read_labelled, read_conll, read_parallel, read_series, read_captions]
IDS = [r.__name__ for r in READERS]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def expect(fn, *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# --- problems every reader reports the same way ------------------------------------------------
@pytest.mark.parametrize("reader", READERS, ids=IDS)
def test_missing_file(tmp_path, reader):
    expect(lambda: reader(tmp_path / "nope.txt"), "nope.txt", "no such file")


@pytest.mark.parametrize("reader", READERS, ids=IDS)
@pytest.mark.parametrize("content", ["", " \n\n"], ids=["empty", "blank"])
def test_empty_file(tmp_path, reader, content):
    expect(lambda: reader(write(tmp_path / "e.txt", content)), "e.txt", "empty")


@pytest.mark.parametrize("reader", READERS, ids=IDS)
def test_non_utf8_names_the_line(tmp_path, reader):
    p = tmp_path / "latin1.txt"
    p.write_bytes("ok\tA\nstill ok\tB\ncaf\u00e9\tC\n".encode("latin-1"))
    expect(lambda: reader(p), "latin1.txt:3:", "not UTF-8", "e9")


@pytest.mark.parametrize("reader", READERS, ids=IDS)
def test_a_file_that_cannot_be_read_is_named_with_the_reason(tmp_path, reader, monkeypatch):
    """No permission (simulated: the tests may run as root) or a name the system refuses: Python's OSError,
    exit 1, became a DataError naming the file and why."""
    long_name = tmp_path / ("a" * 300 + ".txt")
    expect(lambda: reader(long_name), "a" * 300, "cannot be read", "too long")
    p = write(tmp_path / "locked.txt", "a\tb\n")
    real_open, real_read = type(p).open, type(p).read_bytes

    def refuse(self, *args, **kwargs):
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return (real_read if not args and not kwargs else real_open)(self, *args, **kwargs)

    monkeypatch.setattr(type(p), "read_bytes", lambda self: refuse(self))
    monkeypatch.setattr(type(p), "open", lambda self, *a, **k: refuse(self, *(a or ("r",)), **k))
    expect(lambda: reader(p), "locked.txt", "cannot be read (Permission denied)")


@pytest.mark.parametrize("ends", ["\r", "\r\n"], ids=["CR", "CRLF"])
def test_a_bad_byte_is_placed_on_its_line_whatever_the_line_ends(tmp_path, ends):
    """A file with old Mac line ends (CR alone) counted as one line: its bad byte was blamed on line 1."""
    p = tmp_path / "mac.csv"
    p.write_bytes(ends.join(["text,label", "good,pos", "caf\xe9,neg", ""]).encode("latin-1"))
    expect(lambda: read_labelled(p), "mac.csv:3:", "at byte 4 of the line", "e9")


def test_a_gzip_file_says_so(tmp_path):
    import gzip

    p = tmp_path / "train.csv.gz"
    p.write_bytes(gzip.compress(b"text,label\ngood,pos\n"))
    expect(lambda: read_labelled(p), "train.csv.gz", "gzip-compressed", "gunzip")


def test_data_error_is_value_error_with_location(tmp_path):
    with pytest.raises(ValueError) as info:
        read_conll(write(tmp_path / "t.conll", "a O\nb O X\n"))
    assert isinstance(info.value, DataError) and info.value.line == 2 and info.value.path.endswith("t.conll")


# --- text ----------------------------------------------------------------------------------------
def test_read_text_normalises_line_ends_and_bom(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("\ufeffone\r\ntwo\rthree\n".encode("utf-8"))
    assert read_text(p) == "one\ntwo\nthree\n"


def test_marks_of_files_joined_with_cat_are_dropped_too(tmp_path):
    """Each joined file keeps its byte-order mark at its first line: a repeated header hid behind it and was
    read as an example ('\\ufefftext', class 'label'), and ``\\ufeff-DOCSTART-`` as a one-word sentence."""
    one = "\ufefftext,label\ngreat film,pos\nawful film,neg\n"
    expect(lambda: read_labelled(write(tmp_path / "j.csv", one + one)), "j.csv:4:", "repeats the header row")
    pair = "\ufeffsource\ttarget\nein Haus\ta house\n"
    expect(lambda: read_parallel(write(tmp_path / "j.tsv", pair + pair)), "j.tsv:3:", "repeats the header line")
    doc = "\ufeff-DOCSTART- O\n\nEU B-ORG\n"
    assert read_conll(write(tmp_path / "j.conll", doc + "\n" + doc)) == [(["EU"], ["B-ORG"])] * 2
    assert read_text(write(tmp_path / "t.txt", "a\n\ufeffb \ufeffc\n")) == "a\nb \ufeffc\n"  # (a line's start only)


# --- classification ------------------------------------------------------------------------------
def test_labelled_with_header_quotes_and_extra_columns(tmp_path):
    p = write(tmp_path / "a.csv", 'id,Label,Text\n1,pos,"good, really"\n\n2,neg,"two\nlines"\n')
    assert read_labelled(p) == [("good, really", "pos"), ("two\nlines", "neg")]


def test_labelled_without_header_and_tsv(tmp_path):
    assert read_labelled(write(tmp_path / "a.tsv", "hi, you\tgreet\nbye\tleave\n")) == [("hi, you", "greet"), ("bye", "leave")]
    assert read_labelled(write(tmp_path / "q.tsv", '"Hi" she said\tgreet\n')) == [('"Hi" she said', "greet")]  # TSV: no quoting
    assert read_labelled(write(tmp_path / "b.csv", "sentence,label\nhi,x\n")) == [("hi", "x")]  # two columns: the other is text


def test_labelled_missing_label_column(tmp_path):
    expect(lambda: read_labelled(write(tmp_path / "a.csv", "text,category\nhi,x\n")), "a.csv:1:", "no 'label' column")
    expect(lambda: read_labelled(write(tmp_path / "b.csv", "just text\nmore text\n")), "b.csv:1:", "expected 2", "got 1")


def test_labelled_bad_rows_name_their_line(tmp_path):
    p = write(tmp_path / "a.csv", 'text,label\nfine,x\n"multi\nline",y\nno label here\n')
    expect(lambda: read_labelled(p), "a.csv:5:", "expected 2 comma-separated columns", "got 1")
    expect(lambda: read_labelled(write(tmp_path / "b.csv", "text,label\nfine,\n")), "b.csv:2:", "empty label")
    expect(lambda: read_labelled(write(tmp_path / "c.txt", "great\tpos\nbad\tneg\n")), "c.txt:1:",
           "expected 2 comma-separated columns", "only .tsv/.tab files are read as tab-separated: rename the file")


def test_labelled_stray_quotes_are_errors_not_merged_rows(tmp_path):
    """A quote that opens a field and never closes would swallow the lines after it into one example; a quote
    inside a quoted field, not doubled, would alter the text. Both name the line where the record starts."""
    rows = "".join(f"row {i},pos\n" for i in range(5))
    p = write(tmp_path / "a.csv", 'text,label\n' + rows + '"the food, it was great,pos\n' + rows + 'he said "no" twice,neg\n')
    expect(lambda: read_labelled(p), "a.csv:7:", "malformed CSV", "starts on line 7 and runs to line 13", "doubled")
    p = write(tmp_path / "b.csv", 'text,label\nfine,pos\n"the food was "great" really,pos\n')
    expect(lambda: read_labelled(p), "b.csv:3:", "malformed CSV", "doubled")
    p = write(tmp_path / "c.csv", 'text,label\n"a ""quoted"" word",pos\n"two\nlines",neg\n')  # correct quoting still reads
    assert read_labelled(p) == [('a "quoted" word', "pos"), ("two\nlines", "neg")]


def header_rows(first: str, n: int = 20, sep: str = ",") -> str:
    """``first``, then ``n`` rows labelled pos/neg alternately."""
    return first + "\n" + "".join(f"some text {i}{sep}{('pos', 'neg')[i % 2]}\n" for i in range(n))


def test_labelled_header_with_other_names_is_an_error(tmp_path):
    p = write(tmp_path / "reviews.csv", header_rows("review,sentiment"))
    msg = expect(lambda: read_labelled(p), "reviews.csv:1:", "looks like a header", "'sentiment' occurs on no other row",
                 "expected a header 'text,label' or none, got 'review,sentiment'",
                 "--text_column review --label_column sentiment")
    assert "rename the columns to text and label" in msg
    rows = read_labelled(p, text_column="review", label_column="sentiment")  # the suggested options work
    assert len(rows) == 20 and {label for _, label in rows} == {"pos", "neg"}
    tsv = write(tmp_path / "reviews.tsv", header_rows("my review\tsentiment", sep="\t"))
    expect(lambda: read_labelled(tsv), "reviews.tsv:1:", r"'text\tlabel'", "--text_column 'my review'")


def test_labelled_first_row_kept_when_not_header_like(tmp_path):
    # its label occurs again: an ordinary first example
    assert len(read_labelled(write(tmp_path / "a.csv", header_rows("first text,pos")))) == 21
    # another label occurs only once: rare classes, not a header
    rare = write(tmp_path / "b.csv", header_rows("odd one,rare") + "lonely,other\n")
    assert read_labelled(rare)[0] == ("odd one", "rare")
    assert read_labelled(write(tmp_path / "c.csv", "only,row\n")) == [("only", "row")]
    # a real text,label header is still a header
    assert len(read_labelled(write(tmp_path / "d.csv", header_rows("text,label")))) == 20


# --- tagging -------------------------------------------------------------------------------------
def test_conll_sentences_docstart_and_columns(tmp_path):
    p = write(tmp_path / "t.conll", "-DOCSTART- -X- O\n\nJohn NNP B-PER\nruns VBZ O\n\n\nParis NNP B-LOC\n")
    assert read_conll(p) == [(["John", "runs"], ["B-PER", "O"]), (["Paris"], ["B-LOC"])]
    assert read_conll(p, tag_column=1) == [(["John", "runs"], ["NNP", "VBZ"]), (["Paris"], ["NNP"])]


def test_conll_wrong_column_count_names_the_line(tmp_path):
    p = write(tmp_path / "t.conll", "John\tB-PER\nruns\tO\n\nParis B-LOC extra\n")
    expect(lambda: read_conll(p), "t.conll:4:", "expected 2 columns as on line 1", "got 3")
    expect(lambda: read_conll(write(tmp_path / "u.conll", "lonely\n")), "u.conll:1:", "at least 2 columns")


# --- translation ---------------------------------------------------------------------------------
def test_parallel_two_files_and_tsv(tmp_path):
    src = write(tmp_path / "s.txt", "a b\n\nc\n")
    tgt = write(tmp_path / "t.txt", "x\n\ny z\n")
    assert read_parallel(src, tgt) == [("a b", "x"), ("c", "y z")]
    assert read_parallel(write(tmp_path / "p.tsv", "a b\tx\nc\ty z\n")) == [("a b", "x"), ("c", "y z")]


def test_parallel_errors(tmp_path):
    src = write(tmp_path / "s.txt", "a\nb\nc\n")
    expect(lambda: read_parallel(src, write(tmp_path / "t.txt", "x\ny\n")), "s.txt", "t.txt (2)", "got 3")
    expect(lambda: read_parallel(src, write(tmp_path / "u.txt", "x\n\nz\n")), "u.txt:2:", "empty target")
    expect(lambda: read_parallel(write(tmp_path / "p.tsv", "a\tx\nno tab\n")), "p.tsv:2:", "expected 2 tab-separated", "got 1")


def test_parallel_header_line_naming_the_columns_is_not_a_pair(tmp_path):
    """A table written with its header (pandas' to_csv(sep='\\t')) starts with source<TAB>target: it was
    trained on as a sentence pair."""
    for header in ("source\ttarget", "Src\tTgt", " input \t output"):
        assert read_parallel(write(tmp_path / "h.tsv", f"{header}\nein Haus\ta house\n")) == [("ein Haus", "a house")]
    pairs = read_parallel(write(tmp_path / "p.tsv", "hallo\thello\nsource\ttarget\n"))  # later: a pair
    assert pairs == [("hallo", "hello"), ("source", "target")]
    # but the header of the first line repeated (two tables joined with ``cat``) is named, not a pair
    joined = write(tmp_path / "j.tsv", "source\ttarget\nein Haus\ta house\n\nSource\tTarget\nhallo\thello\n")
    expect(lambda: read_parallel(joined), "j.tsv:4:", "repeats the header line 'Source\\tTarget' of line 1")


def test_labelled_header_naming_a_column_twice_is_an_error(tmp_path):
    """``text,label,label``: the first 'label' was read, silently."""
    expect(lambda: read_labelled(write(tmp_path / "d.csv", "text,label,Label\ngood,pos,neg\nbad,neg,pos\n")),
           "d.csv:1:", "the header names 'label' 2 times")


def test_labelled_header_repeated_later_is_an_error(tmp_path):
    """``cat a.csv b.csv``: the second file's header row would be an example of a class named 'label'."""
    one = "text,label\ngreat film,pos\nawful film,neg\n"
    p = write(tmp_path / "abc.csv", one + one.upper().replace("GREAT FILM,POS", "fine,pos").replace("AWFUL FILM,NEG",
                                                                                                  "poor,neg"))
    expect(lambda: read_labelled(p), "abc.csv:4:", "repeats the header row 'text,label' of line 1",
           "files joined with their headers")


# --- forecasting ---------------------------------------------------------------------------------
def test_series_header_skips_date_column_and_selects(tmp_path):
    p = write(tmp_path / "s.csv", "date,co2,temp\n2020-01,1.5,3\n2020-02,2.5,-4e1\n")
    s = read_series(p)
    assert s.columns == ["co2", "temp"] and s.values.dtype == torch.float32
    torch.testing.assert_close(s.values, torch.tensor([[1.5, 3.0], [2.5, -40.0]]))
    assert read_series(p, columns=["temp"]).columns == ["temp"]
    assert read_series(write(tmp_path / "n.csv", "1\n2\n3\n")).values.shape == (3, 1)  # no header


@pytest.mark.parametrize("cell,got", [("nan", "'nan'"), ("abc", "'abc'"), ("", "an empty cell"), ("inf", "'inf'")])
def test_series_bad_value_names_line_and_column(tmp_path, cell, got):
    p = write(tmp_path / "s.csv", f"date,co2\n2020-01,1.5\n2020-02,{cell}\n")
    expect(lambda: read_series(p), "s.csv:3:", "column 'co2'", "expected a finite number", f"got {got}")


@pytest.mark.parametrize("first,got", [("", "an empty cell"), ("oops", "'oops'")])
def test_series_column_with_a_bad_first_value_is_not_dropped(tmp_path, first, got):
    """A numeric column is one that holds a number anywhere: a blank or mistyped first value is an error
    in it, not a reason to leave the column out (it was dropped without a word)."""
    p = write(tmp_path / "s.csv", f"date,a,b\nd1,{first},2\nd2,3,4\n")
    expect(lambda: read_series(p), "s.csv:2:", "column 'a'", f"got {got}")


def test_series_leaves_out_the_row_numbers_pandas_writes(tmp_path):
    """``DataFrame.to_csv`` writes an unnamed index column first; it was read as a second series."""
    p = write(tmp_path / "s.csv", ",a\n0,5.5\n1,6.5\n2,7.5\n")
    s = read_series(p)
    assert s.columns == ["a"] and s.values.shape == (3, 1)
    assert read_series(p, columns=[0, 1]).columns == ["", "a"]  # chosen by index, it is used
    expect(lambda: read_series(write(tmp_path / "i.csv", ",a\n0,x\n1,y\n")), "i.csv:1:", "--columns 0")


def test_series_with_thousands_separators_is_an_error_not_a_skipped_column(tmp_path):
    p = write(tmp_path / "s.csv", 'date,temp,sales\n2020-01,20.0,"1,200"\n2020-02,20.5,"1,250"\n2020-03,21.0,980\n')
    expect(lambda: read_series(p), "s.csv:2:", "column 'sales'", "'1,200' is a number with thousands separators")
    assert read_series(p, columns=["temp"]).columns == ["temp"]  # left out by name, it is fine
    p = write(tmp_path / "t.csv", 'date,sales\n2020-01,"1,200"\n2020-02,"1,250"\n')  # no plain number at all
    expect(lambda: read_series(p), "t.csv:2:", "column 'sales'", "'1,200' is a number with thousands separators")


def test_series_written_for_people_or_beyond_float32_is_an_error(tmp_path):
    """A column of decimal commas was skipped as text (the thousands check matched groups of three only); a
    value beyond float32 became inf in the series and failed later as an index into a tensor; a header naming
    a column twice made the match with a validation file's columns a guess."""
    p = write(tmp_path / "eu.csv", 'date,temp,sales\n2024-01-01,"12,5",100\n2024-01-02,"1.213,25",101\n')
    expect(lambda: read_series(p), "eu.csv:2:", "column 'temp'", "'12,5' is a number with a decimal comma")
    assert read_series(p, columns=["sales"]).columns == ["sales"]
    big = write(tmp_path / "big.csv", "v\n1\n2\n1e39\n-4\n")
    expect(lambda: read_series(big), "big.csv:4:", "column 'v'", "1e39", "float32")
    assert read_series(write(tmp_path / "ok.csv", "v\n1\n3e38\n")).values[1, 0] == 3e38
    top = read_series(write(tmp_path / "top.csv", "v\n1\n3.4028235e+38\n")).values  # float32's largest, as printed
    assert torch.isfinite(top).all() and top[1, 0] == torch.finfo(torch.float32).max
    expect(lambda: read_series(write(tmp_path / "dup.csv", "a,b,a\n1,2,3\n")), "dup.csv:1:", "names 'a' 2 times")
    # a column read twice under one name is refused; one named twice but left out (text) is not
    assert read_series(write(tmp_path / "notes.csv", "note,value,note\nx,1,y\nz,2,w\n")).columns == ["value"]
    # a leading zero is no thousands group: 0,125 is a decimal comma, and so is the 1,250 of its column
    expect(lambda: read_series(write(tmp_path / "z.tsv", "v\tw\n0,125\t1\n1,250\t2\n0,375\t3\n")), "z.tsv:2:",
           "'0,125' is a number with a decimal comma")


def test_series_rows_of_empty_cells_are_missing_values_not_blank_lines(tmp_path):
    """pandas writes NaN in a one-column file as ``""``, and a row of NaNs as ``,``: each is a time step
    (it was skipped as a blank line, shortening the series silently); such rows at the end are left out."""
    expect(lambda: read_series(write(tmp_path / "a.csv", 'x\n1\n2\n""\n3\n')), "a.csv:4:", "column 'x'",
           "got an empty cell (a missing value)")
    expect(lambda: read_series(write(tmp_path / "b.csv", "x,y\n1,2\n,\n3,4\n")), "b.csv:3:", "column 'x'")
    s = read_series(write(tmp_path / "c.csv", "x,y\n1,2\n\n3,4\n   \n5,6\n,\n,,\n\n"))  # blank lines; trailing ,
    assert s.values.tolist() == [[1, 2], [3, 4], [5, 6]]
    # in one column a blank line is how a spreadsheet writes an empty cell: it was skipped, losing the step
    expect(lambda: read_series(write(tmp_path / "d.csv", "x\n1\n\n3\n")), "d.csv:3:", "a blank line between values",
           "a missing time step")
    assert read_series(write(tmp_path / "e.csv", "\n\nx\n1\n2\n\n\n")).values.flatten().tolist() == [1, 2]
    # a first row of empty cells is no blank line to skip: a missing first value, or a header without names
    for name, text in (("f.csv", '""\n1\n2\n'), ("g.csv", ",\n1,2\n3,4\n")):
        expect(lambda: read_series(write(tmp_path / name, text)), f"{name}:1:", "the first row holds only empty cells")


def test_series_columns_named_by_numbers_are_picked_by_name(tmp_path):
    """``--columns 1`` on a header ``1,2,3`` picked the column named "2" (index 1), silently."""
    p = write(tmp_path / "n.csv", "1,2,3\n10,20,30\n11,21,31\n")
    s = read_series(p, header=True, columns=[1])
    assert s.columns == ["1"] and s.values.flatten().tolist() == [10, 11]
    assert read_series(p, header=False, columns=[1]).values.flatten().tolist() == [2, 20, 21]  # no header: index
    assert read_series(p, header=True, columns=[0]).columns == ["1"]  # (0 is no name: the index)


def test_series_header_of_numbers_is_said_with_header_true(tmp_path):
    """Column names that are numbers (years) look like values: ``header=True`` says they are names."""
    p = write(tmp_path / "y.csv", "date,2019,2020\n2021-01,1.0,2.0\n2021-02,1.5,2.5\n")
    assert read_series(p).columns == ["2", "3"] and read_series(p).values[0].tolist() == [2019, 2020]
    s = read_series(p, header=True)
    assert s.columns == ["2019", "2020"] and s.values.tolist() == [[1.0, 2.0], [1.5, 2.5]]
    expect(lambda: read_series(write(tmp_path / "m.csv", "a\n1\n2\n"), header=False), "m.csv:1:", "got 'a'")


def test_series_unknown_column(tmp_path):
    p = write(tmp_path / "s.csv", "a,b\n1,2\n")
    expect(lambda: read_series(p, columns=["c"]), "no column 'c'", "['a', 'b']")


# --- captions ------------------------------------------------------------------------------------
def test_captions_npz_and_folder_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = Captions(torch.rand(4, 1, 5, 7, generator=g), ["one", "two three", "four", "five six"])
    for target in (tmp_path / "c.npz", tmp_path / "folder"):
        back = read_captions(write_captions(target, data))
        assert back.captions == data.captions and back.images.shape == (4, 1, 5, 7)
        torch.testing.assert_close(back.images, data.images, atol=1 / 510 + 1e-6, rtol=0)
    assert read_captions(tmp_path / "folder" / "captions.tsv").captions == data.captions


def test_captions_npz_channels_last_and_uint8(tmp_path):
    np.savez(tmp_path / "rgb.npz", images=np.full((2, 3, 4, 3), 255, np.uint8), captions=np.array(["a", "b"]))
    c = read_captions(tmp_path / "rgb.npz")
    assert c.images.shape == (2, 3, 3, 4) and float(c.images.min()) == 1.0


def test_captions_npz_channels_first(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 5, 7, generator=g)  # (N, C, H, W), as PyTorch and ImageCaptioner use
    np.savez(tmp_path / "grey.npz", images=images.numpy(), captions=np.array(["a", "b", "c"]))
    torch.testing.assert_close(read_captions(tmp_path / "grey.npz").images, images)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 3, 6, 8), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=rgb, captions=np.array(["a", "b"]))
    c = read_captions(tmp_path / "rgb.npz")
    assert c.images.shape == (2, 3, 6, 8)
    torch.testing.assert_close(c.images, torch.from_numpy(rgb).float() / 255)


def test_captions_npz_ambiguous_layout_is_channels_last(tmp_path):
    images = np.zeros((2, 3, 8, 3), np.uint8)  # (N, C, H, W) or (N, H, W, C)? read as 3 high, 8 wide, RGB
    np.savez(tmp_path / "amb.npz", images=images, captions=np.array(["a", "b"]))
    assert read_captions(tmp_path / "amb.npz").images.shape == (2, 3, 3, 8)


def test_captions_npz_bad_layout_names_all_three(tmp_path):
    np.savez(tmp_path / "five.npz", images=np.zeros((2, 5, 6, 7)), captions=np.array(["a", "b"]))
    expect(lambda: read_captions(tmp_path / "five.npz"), "five.npz",
           "expected shape (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4, got (2, 5, 6, 7)")


def test_captions_corrupt_npz_names_the_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    good = write_captions(tmp_path / "good.npz", Captions(torch.rand(4, 1, 8, 8, generator=g), ["a", "b", "c", "d"]))
    data = good.read_bytes()
    (tmp_path / "head.npz").write_bytes(data[:500])
    expect(lambda: read_captions(tmp_path / "head.npz"), "head.npz:", "not a readable .npz archive", "not a zip file")
    (tmp_path / "text.npz").write_text("hello")
    expect(lambda: read_captions(tmp_path / "text.npz"), "text.npz:", "not a readable .npz archive")
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF  # inside the compressed images: a CRC or zlib error
    (tmp_path / "flip.npz").write_bytes(bytes(damaged))
    expect(lambda: read_captions(tmp_path / "flip.npz"), "flip.npz:", "not a readable .npz archive")


def test_captions_errors(tmp_path):
    np.savez(tmp_path / "obj.npz", images=np.zeros((2, 4, 4)), captions=np.array(["a", None], dtype=object))
    expect(lambda: read_captions(tmp_path / "obj.npz"), "obj.npz", "without pickle")
    np.savez(tmp_path / "few.npz", images=np.zeros((3, 4, 4)), captions=np.array(["a"]))
    expect(lambda: read_captions(tmp_path / "few.npz"), "one caption per image", "got 1")
    np.savez(tmp_path / "keys.npz", pictures=np.zeros((1, 4, 4)))
    expect(lambda: read_captions(tmp_path / "keys.npz"), "expected arrays 'images' and 'captions'")
    (tmp_path / "empty_dir").mkdir()
    expect(lambda: read_captions(tmp_path / "empty_dir"), "no captions.tsv")
    folder = write_captions(tmp_path / "f", Captions(torch.zeros(2, 1, 3, 3), ["a", "b"]))
    write(folder / "captions.tsv", "000000.png\ta\nmissing.png\tb\n")
    expect(lambda: read_captions(folder), "captions.tsv:2:", "'missing.png' not found")
    write_captions(tmp_path / "g", Captions(torch.zeros(1, 1, 3, 5), ["x"]))
    (folder / "000001.png").write_bytes((tmp_path / "g" / "000000.png").read_bytes())  # a differently sized image
    write(folder / "captions.tsv", "000000.png\ta\n000001.png\tb\n")
    expect(lambda: read_captions(folder), "captions.tsv:2:", "expected shape (3, 3)", "got (3, 5)")


# --- writers are the readers' inverses; holdout keeps the kind ------------------------------------
def test_writers_round_trip(tmp_path):
    labelled = [("a, \"quoted\" text", "x"), ("tab\tinside", "y"), ("two\nlines", "z")]
    assert read_labelled(write_labelled(tmp_path / "l.csv", labelled)) == labelled
    assert read_labelled(write_labelled(tmp_path / "l.tsv", labelled[:1])) == labelled[:1]
    with pytest.raises(ValueError, match="cannot hold"):
        write_labelled(tmp_path / "bad.tsv", labelled[1:2])
    sentences = [(["John", "Smith", "ran"], ["B-PER", "I-PER", "O"]), (["."], ["O"])]
    assert read_conll(write_conll(tmp_path / "t.conll", sentences)) == sentences
    pairs = [("1 2", "2 1"), ("ça va", "ok")]
    assert read_parallel(write_parallel(tmp_path / "p.tsv", pairs)) == pairs
    series = Series(torch.randn(20, 3, generator=torch.Generator().manual_seed(1)), ["a", "b", "c"])
    back = read_series(write_series(tmp_path / "s.csv", series))
    assert back.columns == series.columns and torch.equal(back.values, series.values)
    with pytest.raises(ValueError, match="cannot hold"):
        write_parallel(tmp_path / "bad.tsv", [("a\tb", "c")])


def test_holdout_kinds_and_seed():
    items = list(range(50))
    train, valid = holdout(items, 0.2, seed=3)
    assert len(valid) == 10 and sorted(train + valid) == items and train == sorted(train)
    assert holdout(items, 0.2, seed=3) == (train, valid) and holdout(items, 0.2, seed=4) != (train, valid)
    assert holdout("abcdefghij", 0.3) == ("abcdefg", "hij")
    assert holdout("the cat sat on it", 0.1) == ("the cat sat on ", "it")  # (a cut inside a word moves to its start)
    assert holdout("the cat sat\nonward", 0.2) == ("the cat sat\n", "onward")
    # ... but not further than a word's length: text without spaces keeps its cut (a title line then 4,200
    # Chinese characters put 99.9 % into validation), and any Unicode space ends a word
    train, valid = holdout("标题\n" + "字" * 4200, 0.1)
    assert (len(train), len(valid)) == (3783, 420)
    train, valid = holdout("Title line\n" + "words\u3000" * 1000, 0.15)
    assert valid.startswith("words\u3000") and 0.14 < len(valid) / (len(train) + len(valid)) < 0.16
    s_train, s_valid = holdout(Series(torch.arange(10.0).unsqueeze(1), ["x"]), 0.2)
    assert s_valid.values.flatten().tolist() == [8.0, 9.0] and s_train.columns == ["x"]
    with pytest.raises(ValueError, match="at least 2"):
        holdout([1], 0.5)
    with pytest.raises(ValueError, match="holdout: seed must be >= 0, got -3"):  # (it would split as seed 3)
        holdout(items, 0.2, seed=-3)


def test_writers_refuse_what_their_readers_would_read_differently(tmp_path):
    from rnnkit.data import (
        Captions, Series, read_labelled, read_series, write_captions, write_conll, write_labelled, write_parallel,
        write_series, write_text,
    )

    (tmp_path / "plain.csv").write_text("1,2\n3,4\n")
    headerless = read_series(tmp_path / "plain.csv")  # columns named "1", "2"
    again = read_series(write_series(tmp_path / "again.csv", headerless))
    assert again.columns == ["1", "2"] and again.values.tolist() == headerless.values.tolist()
    bad = [
        (write_series, (Series(torch.ones(2, 1), ["2020"]),), "column name '2020' would not read back"),
        (write_conll, ([(["New\u00a0York"], ["B-LOC"])],), "contains '\\\\xa0'"),
        (write_conll, ([([""], ["O"])],), "an empty token"),
        (write_conll, ([(["-DOCSTART-"], ["O"])],), "document break"),
        (write_labelled, ([("a\rb", "pos")],), "contains '\\\\r'"),
        (write_labelled, ([("ab", "p\ros")],), "label 'p\\\\ros' contains '\\\\r'"),
        (write_labelled, ([(" padded ", "pos")],), "begins or ends with whitespace, which its reader strips"),
        (write_labelled, ([("", "pos")],), "an empty text, which its reader refuses"),
        (write_parallel, ([("a\rb", "c")],), "contains '\\\\r'"),
        (write_parallel, ([(" a", "b")],), "begins or ends with whitespace"),
        (write_conll, ([([], [])],), "an empty sentence"),
        (write_series, (Series(torch.ones(2, 1), [" x"]),), "column name ' x' would not read back"),
        (write_text, ("a\r\nb",), "normalises to a newline"),
        (write_captions, (Captions(torch.zeros(1, 1, 2, 2), [" a "]),), "would not read back"),
        (write_captions, (Captions(torch.zeros(1, 1, 2, 2), ["a\tb"]),), "would not read back"),
        # nothing, non-finite values, pixels outside [0, 1], a leading U+FEFF, a NUL the .npz form drops:
        # each read back differently or not at all
        (write_text, (" \n",), "nothing to write"),
        (write_labelled, ([],), "no examples to write"),
        (write_conll, ([],), "nothing to write"),
        (write_parallel, ([],), "nothing to write"),
        (write_series, (Series(torch.ones(0, 2), ["a", "b"]),), "T, C >= 1"),
        (write_series, (Series(torch.tensor([[1.0, float("nan")]]), ["t", "h"]),), "column 'h', step 0: nan"),
        (write_series, (Series(torch.tensor([[1.0], [float("inf")]]), ["x"]),), "step 1: inf is not a finite"),
        (write_series, (Series(torch.ones(2, 1), ["a\rb"]),), "contains '\\\\r'"),
        (write_text, ("\ufeffhello\n",), "begins with U\\+FEFF"),
        (write_parallel, ([("\ufeffa", "b")],), "begins with U\\+FEFF"),
        (write_text, ("one\n\ufeffhello\n",), "begins with U\\+FEFF, or a line of it does"),
        (write_labelled, ([("first", "x"), ("\ufeffsecond", "y")],), "or a line of it does"),
        (write_captions, (Captions(torch.full((1, 1, 2, 2), 2.0), ["a"]),), r"pixels must be in \[0, 1\]"),
        (write_captions, (Captions(torch.full((1, 1, 2, 2), float("nan")), ["a"]),), r"pixels must be in \[0, 1\]"),
        (write_captions, (Captions(torch.zeros(0, 1, 2, 2), []),), "no images"),
        (write_captions, (Captions(torch.zeros(1, 1, 2, 2), ["ab\x00"]),), "NUL"),
    ]
    for writer, args, message in bad:
        with pytest.raises(ValueError, match=message):
            writer(tmp_path / "x.txt", *args)
    with pytest.raises(TypeError, match="write_labelled: each label must be a str, got int 1"):
        write_labelled(tmp_path / "x.csv", [("good film", 1)])
    with pytest.raises(TypeError, match="write_conll: each tag must be a str, got int 3"):
        write_conll(tmp_path / "x.conll", [(["a"], [3])])
    long = "word " * 40_000 + "end"  # one field beyond the csv module's default limit (128 KiB)
    for name in ("long.csv", "long.tsv"):
        assert read_labelled(write_labelled(tmp_path / name, [(long, "pos")])) == [(long, "pos")]


def test_small_input_checks(tmp_path):
    from rnnkit.data import DataError, Vocabulary, read_series

    (tmp_path / "blank.csv").write_text(",\n,\n")
    with pytest.raises(DataError, match="blank.csv: no values: every line is blank or holds only empty cells"):
        read_series(tmp_path / "blank.csv")
    with pytest.raises(ValueError, match="max_size must be >= 0 or None, got -1"):
        Vocabulary.from_counts({"a": 2}, max_size=-1)


def test_pad_batch_refuses_what_it_would_flatten_or_truncate():
    from rnnkit.data import pad_batch

    ids, lengths = pad_batch([[1, 2, 3], []])
    assert ids.tolist() == [[1, 2, 3], [0, 0, 0]] and lengths.tolist() == [3, 0]
    with pytest.raises(ValueError, match="sequence 0 must be a 1-D run of integer ids, got 2-D"):
        pad_batch([[[1, 2], [3, 4]]])
    with pytest.raises(ValueError, match="sequence 1 must be a 1-D run of integer ids, got 1-D with dtype torch.float"):
        pad_batch([[1], [1.7, 2.2]])


def test_holdout_splits_parallel_lists_like_parallel_tensors():
    from rnnkit.data import holdout

    (texts_a, labels_a), (texts_b, labels_b) = holdout((["a", "b", "c", "d"], [0, 1, 2, 3]), 0.5, seed=1)
    assert [ord(t) - ord("a") for t in texts_a] == labels_a and [ord(t) - ord("a") for t in texts_b] == labels_b
    assert sorted(texts_a + texts_b) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="a tuple must hold parallel columns"):
        holdout((["a", "b"], [1]), 0.5)


def test_captions_npz_of_no_images_or_bad_bytes_is_named(tmp_path):
    """A float array of no images failed in numpy's min(); caption bytes that are not UTF-8 in a decode."""
    for dtype in (np.float32, np.uint8):
        np.savez(tmp_path / "none.npz", images=np.zeros((0, 8, 8), dtype), captions=np.array([], dtype=str))
        expect(lambda: read_captions(tmp_path / "none.npz"), "none.npz:", "no images")
    np.savez(tmp_path / "latin1.npz", images=np.zeros((2, 8, 8), np.uint8), captions=np.array([b"one", b"caf\xe9"]))
    expect(lambda: read_captions(tmp_path / "latin1.npz"), "latin1.npz:", "captions[1] is not UTF-8", "e9")
    np.savez(tmp_path / "utf8.npz", images=np.zeros((2, 8, 8), np.uint8), captions=np.array(["one".encode(),
                                                                                             "café".encode()]))
    assert read_captions(tmp_path / "utf8.npz").captions == ["one", "café"]


def test_conll_columns_are_split_at_ascii_spaces_only(tmp_path):
    """A no-break space inside a token ("New\\u00a0York") was a column separator: the token was cut to "New"."""
    p = write(tmp_path / "nb.conll", "New\u00a0York B-LOC\nis O\n\nParis\tB-LOC\n")
    assert read_conll(p) == [(["New\u00a0York", "is"], ["B-LOC", "O"]), (["Paris"], ["B-LOC"])]
    p = write(tmp_path / "ws.conll", "  EU \t NNP  B-ORG \r\n\n \t \nrejects VBZ O\n")  # (stray spaces; a line of them)
    assert read_conll(p) == [(["EU"], ["B-ORG"]), (["rejects"], ["O"])]
    # a line of no-break spaces is still blank, and one at a line's end is no part of its tag
    p = write(tmp_path / "nb2.conll", "EU B-ORG\u00a0\n\u00a0\u3000\nrejects O\n")
    assert read_conll(p) == [(["EU"], ["B-ORG"]), (["rejects"], ["O"])]


def test_a_label_holding_a_line_break_is_an_error(tmp_path):
    """predict writes one label per input line: a class called "po\\nsitive" made two lines of one answer."""
    p = write(tmp_path / "nl.csv", 'text,label\ngood,"po\nsitive"\nbad,neg\n')
    expect(lambda: read_labelled(p), "nl.csv:2:", "the label 'po\\nsitive' holds a line break")


def test_conll_comment_lines_before_a_sentence_are_skipped(tmp_path):
    """CoNLL-U's "# sent_id = 1" lines were read as a token "#" (in a file of as many columns) or blamed on the
    next line; "# newdoc" became a tag. "#tag" stays a token, and so does "#" inside a sentence."""
    text = "# newdoc\n# sent_id = 1\nJohn B-PER\nruns O\n\n# text = Mary\nMary B-PER\n# O\n#tag O\n"
    assert read_conll(write(tmp_path / "c.conll", text)) == [(["John", "runs"], ["B-PER", "O"]),
                                                             (["Mary", "#", "#tag"], ["B-PER", "O", "O"])]
    # a tweet that opens with the token "#" keeps it (the line has the token lines' width and no comment's form)
    assert read_conll(write(tmp_path / "t.conll", "#\tO\nlol\tO\n\n# a note\nok\tO\n")) == [
        (["#", "lol"], ["O", "O"]), (["ok"], ["O"])]
    # a comment of the token lines' width whose last word is no tag of the file is still a comment
    assert read_conll(write(tmp_path / "w.conll", "# sent_id=1\n# doc1\nok O\n")) == [(["ok"], ["O"])]
    four = "# from the wire\nEU NNP B-NP B-ORG\n"
    assert read_conll(write(tmp_path / "f.conll", four)) == [(["EU"], ["B-ORG"])]
