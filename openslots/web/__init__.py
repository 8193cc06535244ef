"""`openslots web`: the patient pages behind the links in our messages (claim, decline,
unsubscribe), later the staff screens. `create_app()` builds the FastAPI app."""

from openslots.web.app import create_app, log_path

__all__ = ["create_app", "log_path"]
