"""A database that cannot be opened is a one-line message on the command line, on every backend.

`StoreUnavailable` is what both backends raise for it (see `models/store/base.py`);
the MongoDB case is in `test_config_cli.py`.
"""

from __future__ import annotations

from tests.test_config_cli import _clean_env, _run


async def test_serve_with_an_sqlite_file_that_cannot_be_opened_exits_with_a_message(tmp_path):
    unopenable = tmp_path / "a-directory.db"
    unopenable.mkdir()
    env = _clean_env(WHATSCHAT_DATA_DIR=str(tmp_path), WHATSCHAT_DATABASE_PATH=str(unopenable))
    code, _, err = await _run("serve", env=env)
    assert code == 1, err
    assert "error: SQLite: unable to open database file" in err
    assert str(unopenable) in err
    assert "Traceback" not in err
