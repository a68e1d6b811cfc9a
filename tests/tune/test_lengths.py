"""Reading observed output lengths: the two formats and errors that name the file and line."""

from __future__ import annotations

import pytest

from neffkit.tune.lengths import LengthsError, distribution, parse_lengths, read_lengths


def test_one_per_line_with_comments_and_blank_lines(tmp_path):
    path = tmp_path / "lengths.txt"
    path.write_text("# observed\n3\n\n 12 \n7  # a long one\n")
    assert read_lengths(path) == [3, 12, 7]


def test_json_list(tmp_path):
    path = tmp_path / "lengths.json"
    path.write_text("[3, 12,\n 7]")
    assert read_lengths(path) == [3, 12, 7]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3\n4\nfive\n", r"f\.txt:3: expected a positive integer, got 'five'"),
        ("3\n2.5\n", r"f\.txt:2: expected a positive integer, got '2\.5'"),
        ("3\n0\n", r"f\.txt:2: a length must be at least 1"),
        ("-4\n", r"f\.txt:1: a length must be at least 1"),
        ("# nothing\n\n", r"f\.txt: no lengths"),
        ("[1, 2,\n 3", r"f\.txt:2: not valid JSON"),
        ("[1, true]", r"f\.txt:1: expected a positive integer, got True"),
        ("[1,\n 2,\n\n 2.5]", r"f\.txt:4: expected a positive integer, got 2\.5"),
        ('[1, "2", [3]]', r"f\.txt:1: expected a positive integer, got \[3\]"),
        ("[]", r"f\.txt: expected a non-empty JSON list"),
    ],
)
def test_bad_content_names_file_and_line(text, message):
    with pytest.raises(LengthsError, match=message):
        parse_lengths(text, "f.txt")


def test_unreadable_file(tmp_path):
    with pytest.raises(LengthsError, match=r"missing\.txt: cannot read"):
        read_lengths(tmp_path / "missing.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(LengthsError, match=r"b\.txt: cannot read"):
        read_lengths(binary)


def test_distribution():
    assert distribution([1, 1, 3, 4], 4) == [0, 0.5, 0, 0.25, 0.25]
    with pytest.raises(LengthsError, match="2 of 3 lengths exceed the maximum length 4"):
        distribution([5, 1, 9], 4)
