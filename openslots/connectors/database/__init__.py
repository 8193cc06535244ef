"""The project's database: typed models, the engine, and set-based repositories."""

from openslots.connectors.database.engine import (
    get_engine,
    require_current_schema,
    upgrade_database,
)
from openslots.connectors.database.models import Base

__all__ = ["Base", "get_engine", "require_current_schema", "upgrade_database"]
