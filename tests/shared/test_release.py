"""A fresh start activates the version the release names (``models/RELEASE``), never merely the
newest directory: a candidate an operator tried and rolled back must not come back by itself."""

from __future__ import annotations

import pytest

from shared.bootstrap import prepare_database
from shared.config import REPO_ROOT, CommonSettings
from shared.db import session_scope
from shared.registry import RELEASE_FILE, active_version, release_version
from tests.factories import make_tiny_model


@pytest.fixture
def two_bundled(tmp_path):
    bundled = tmp_path / "bundled"
    make_tiny_model(bundled, "released", seed=1)
    make_tiny_model(bundled, "tried-and-rolled-back", seed=2)  # written later: the newest
    return bundled


def _active(url: str) -> str | None:
    with session_scope(url) as session:
        row = active_version(session)
        return row.version if row else None


def test_the_release_file_names_the_version_a_fresh_start_activates(database_url, two_bundled, tmp_path):
    (two_bundled / RELEASE_FILE).write_text("released\n")
    assert prepare_database(database_url, two_bundled, model_store=tmp_path / "store") == "released"
    assert (tmp_path / "store" / "released" / "model.onnx").is_file(), "published into the store"


def test_several_bundled_versions_and_no_release_activate_none(database_url, two_bundled, tmp_path):
    assert prepare_database(database_url, two_bundled, model_store=tmp_path / "store") is None
    assert _active(database_url) is None


def test_a_release_that_is_not_bundled_fails_the_start(database_url, two_bundled, tmp_path):
    (two_bundled / RELEASE_FILE).write_text("gone\n")
    with pytest.raises(RuntimeError, match="names 'gone'"):
        prepare_database(database_url, two_bundled, model_store=tmp_path / "store")


def test_a_lone_bundled_version_needs_no_name(database_url, tmp_path):
    make_tiny_model(tmp_path / "one", "only")
    assert prepare_database(database_url, tmp_path / "one", model_store=tmp_path / "store") == "only"


def test_the_checkout_names_its_release_and_new_versions_go_under_data_dir(tmp_path):
    assert release_version(REPO_ROOT / "models") == "2026-12-02-lite2-b19-lite0-b13"
    assert (REPO_ROOT / "models" / release_version(REPO_ROOT / "models") / "card.json").is_file()
    settings = CommonSettings(data_dir=tmp_path)
    assert settings.resolved_model_store == str(tmp_path / "models")
