import pytest

from pipeline.files import atomic_write, write_json


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"accuracy": 0.5})
    before = path.read_bytes()

    def half_then_crash(tmp):
        tmp.write_text('{"accur')
        raise KeyboardInterrupt  # a kill between the first bytes and the rename

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    write_json(path, {"accuracy": 0.75})
    assert path.read_text() == '{\n  "accuracy": 0.75\n}\n'


def test_an_atomically_written_file_has_the_permissions_of_a_plain_one(tmp_path):
    (tmp_path / "plain.json").write_text("{}")
    write_json(tmp_path / "atomic.json", {})
    assert (tmp_path / "atomic.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode
