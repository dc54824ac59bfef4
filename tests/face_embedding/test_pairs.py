"""LFW's pairs file: both header shapes, tabs or spaces, names with any marks, rows told apart by their field count,
and every malformed line named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.common.errors import DatasetError
from tasks.face_embedding.data import index_pairs, lfw_image_path, read_pairs


def _write(tmp_path: Path, text: str, name: str = "pairs.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_view2_file_gives_each_row_its_fold_by_position(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "2\t1\nAaron_Peirsol\t1\t2\nAaron_Peirsol\t1\tJean-Pierre_Raffarin\t3\n"
        "Juan_Carlos_Ferrero\t2\t4\nJohn_O'Neill\t1\tJuan_Carlos_Ferrero\t1\n",
    )

    parsed = read_pairs(path)

    assert (parsed.num_folds, parsed.pairs_per_fold, parsed.has_folds) == (2, 1, True)
    assert [pair.fold for pair in parsed.pairs] == [0, 0, 1, 1]
    assert [pair.same for pair in parsed.pairs] == [True, False, True, False]
    assert parsed.pairs[1].first == ("Aaron_Peirsol", 1) and parsed.pairs[1].second == ("Jean-Pierre_Raffarin", 3)
    assert parsed.pairs[2].first == ("Juan_Carlos_Ferrero", 2) and parsed.pairs[2].second == ("Juan_Carlos_Ferrero", 4)
    assert parsed.pairs[3].first == ("John_O'Neill", 1)
    assert [pair.line for pair in parsed.pairs] == [2, 3, 4, 5]


def test_a_view1_file_with_one_count_and_spaces_is_one_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "2\nA_B 1 2\nC-D_E  3   1\nA_B 1 C-D_E 2\nC-D_E 1   A_B 2\n")

    parsed = read_pairs(path)

    assert (parsed.num_folds, parsed.pairs_per_fold, parsed.has_folds) == (1, 2, False)
    assert [pair.same for pair in parsed.pairs] == [True, True, False, False]
    assert parsed.pairs[1].first == ("C-D_E", 3) and parsed.pairs[1].second == ("C-D_E", 1)


def test_any_number_of_folds_is_read(tmp_path: Path) -> None:
    rows = "".join(f"P_{k}\t1\t2\nP_{k}\t1\tQ_{k}\t1\n" for k in range(7))
    parsed = read_pairs(_write(tmp_path, "7\t1\n" + rows))

    assert parsed.num_folds == 7
    assert [pair.fold for pair in parsed.pairs] == [k for k in range(7) for _ in range(2)]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1\t1\nA_B\t1\t2\nA_B\t1\tC_D\t2\textra\n", 3, "got 5"),
        ("1\t1\nA_B\t1\nA_B\t1\tC_D\t2\n", 2, "got 2"),
        ("1\t1\nA_B\tone\t2\nA_B\t1\tC_D\t2\n", 2, "'one'"),
        ("1\t1\nA_B\t0\t2\nA_B\t1\tC_D\t2\n", 2, "'0'"),
        ("1\t1\nA_B\t1\t2\nA_B\t1\tC_D\t-2\n", 3, "'-2'"),
        ("10\t300\t5\nA_B\t1\t2\n", 1, "header"),
        ("ten\nA_B\t1\t2\n", 1, "'ten'"),
        ("1\t1\n..\t1\t2\nA_B\t1\tC_D\t2\n", 2, "leaves the lfw folder"),
        ("1\t1\nA_B\t1\t2\nA_B\t1\t/etc\t2\n", 3, "absolute file name '/etc'"),
        ("1\t1\nA_B\t1\t\u00b2\nA_B\t1\tC_D\t2\n", 2, "n2 must be a positive integer, got '\u00b2'"),
        ("1\t1\nA_B\t1\t2.0\nA_B\t1\tC_D\t2\n", 2, "'2.0'"),
        ("0\t300\nA_B\t1\t2\n", 1, "a header value must be a positive integer, got '0'"),
        ("1\t1\nA\x00B\t1\t2\nA_B\t1\tC_D\t2\n", 2, "holds a NUL"),
    ],
)
def test_a_malformed_line_is_refused_naming_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(DatasetError, match=f"pairs.txt:{line}:") as error:
        read_pairs(path)
    assert words in str(error.value)


def test_a_row_count_that_disagrees_with_the_header_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "2\t1\nA_B\t1\t2\nA_B\t1\tC_D\t2\nA_B\t2\t3\n")

    with pytest.raises(DatasetError, match="4 rows, the file has 3"):
        read_pairs(path)


def test_a_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_bytes("1\nJos\xe9_Dirceu\t1\t2\nA_B\t1\tC_D\t2\n".encode("latin-1"))

    with pytest.raises(DatasetError, match=f"{path}: cannot read: UnicodeDecodeError"):
        read_pairs(path)


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_bytes("1\nA_B\t1\t2\nA_B\t1\tC_D\t2\n".encode("utf-8-sig"))

    assert read_pairs(path).pairs_per_fold == 1


def test_an_empty_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="empty"):
        read_pairs(_write(tmp_path, "\n\n"))
    with pytest.raises(DatasetError, match="not found"):
        read_pairs(tmp_path / "absent.txt")


def test_image_files_follow_lfws_four_digit_one_based_names(tmp_path: Path) -> None:
    assert lfw_image_path(tmp_path, "Jean-Pierre_Raffarin", 7) == tmp_path / "Jean-Pierre_Raffarin" / (
        "Jean-Pierre_Raffarin_0007.jpg"
    )


def _touch_images(lfw: Path, *keys: tuple[str, int]) -> None:
    for name, number in keys:
        path = lfw_image_path(lfw, name, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_pairs_become_indices_into_the_distinct_images_in_order_of_mention(tmp_path: Path) -> None:
    lfw = tmp_path / "lfw"
    _touch_images(lfw, ("A_B", 1), ("A_B", 2), ("C-D", 1))
    parsed = read_pairs(_write(tmp_path, "1\nA_B\t1\t2\nC-D\t1\tA_B\t2\n"))

    verification = index_pairs(parsed, lfw)

    assert [path.name for path in verification.images] == ["A_B_0001.jpg", "A_B_0002.jpg", "C-D_0001.jpg"]
    assert verification.first.tolist() == [0, 2] and verification.second.tolist() == [1, 1]
    assert verification.same.tolist() == [True, False]


def test_a_single_list_is_split_into_ten_folds_and_the_protocol_says_so(tmp_path: Path) -> None:
    lfw = tmp_path / "lfw"
    same_rows = [f"P_{k}\t1\t2\n" for k in range(20)]
    different_rows = [f"P_{k}\t1\tP_{k + 1}\t2\n" for k in range(20)]
    _touch_images(lfw, *[(f"P_{k}", n) for k in range(21) for n in (1, 2)])

    verification = index_pairs(read_pairs(_write(tmp_path, "20\n" + "".join(same_rows + different_rows))), lfw)

    assert np.bincount(verification.folds).tolist() == [4] * 10
    assert verification.folds[:20].tolist() == [k for k in range(10) for _ in range(2)]
    assert "split into 10 folds" in verification.protocol


def test_a_missing_image_is_named_with_the_line_that_names_it(tmp_path: Path) -> None:
    lfw = tmp_path / "lfw"
    _touch_images(lfw, ("A_B", 1), ("A_B", 2))
    parsed = read_pairs(_write(tmp_path, "1\nA_B\t1\t2\nA_B\t1\tC-D\t3\n"))

    with pytest.raises(DatasetError, match=r"pairs.txt:3: image .*C-D_0003.jpg not found"):
        index_pairs(parsed, lfw)
