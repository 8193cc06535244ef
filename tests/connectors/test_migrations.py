"""The Alembic migrations build exactly the models' schema, on both databases."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, inspect

from openslots.connectors.database import require_current_schema, upgrade_database
from openslots.connectors.database.engine import alembic_config
from openslots.connectors.database.models import Base


def test_migrations_match_the_models(db: Engine) -> None:
    config = alembic_config(db.url.render_as_string(hide_password=False))
    with db.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises when autogenerate would find a difference


def test_upgrade_is_idempotent_and_creates_every_table(db: Engine) -> None:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(db.url))).get_current_head()
    assert upgrade_database() == upgrade_database() == head
    assert set(Base.metadata.tables) <= set(inspect(db).get_table_names())


def test_an_unmigrated_database_is_a_clear_error(tmp_path) -> None:
    import pytest

    from openslots.errors import ConfigurationError
    from openslots.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigurationError, match="run `openslots db upgrade` first"):
        require_current_schema(settings)
    upgrade_database(settings)
    require_current_schema(settings)  # now current: no error
