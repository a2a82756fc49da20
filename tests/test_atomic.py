import pytest

from forecast.atomic import atomic_directory, atomic_path, write_text


def test_write_text_replaces_content(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_directory_publishes_whole_or_nothing(tmp_path):
    target = tmp_path / "report"
    with atomic_directory(target) as tmp:
        (tmp / "index.html").write_text("v1")
    assert (target / "index.html").read_text() == "v1"
    with pytest.raises(ValueError), atomic_directory(target) as tmp:
        (tmp / "index.html").write_text("v2-partial")
        raise ValueError("boom")
    assert (target / "index.html").read_text() == "v1"
    with atomic_directory(target) as tmp:
        (tmp / "index.html").write_text("v2")
        (tmp / "report.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["index.html", "report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
