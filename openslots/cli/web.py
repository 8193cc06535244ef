"""`openslots web`: serve the patient pages (claim, decline, unsubscribe) with uvicorn."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, err, require_schema


def web_command(
    host: Annotated[
        str, typer.Option(help="Address to listen on (a reverse proxy in front for TLS).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")] = 8000,
    as_json: JsonOpt = False,
) -> None:
    """Serve the pages the links in our messages lead to, at OPENSLOTS_PUBLIC_URL.

    Runs until interrupted. The access log (stderr) carries paths without their tokens. With
    --json, one line `{"host", "port", "public_url"}` is printed when it starts.
    """
    import uvicorn

    from openslots.resources import resources
    from openslots.web import create_app

    require_schema(as_json)
    public_url = resources().settings.public_url
    if as_json:
        emit_json({"host": host, "port": port, "public_url": public_url})
    else:
        err.print(f"serving the patient pages on http://{host}:{port} (links: {public_url})")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("openslots.web", "openslots.web.access"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = False
    # uvicorn's own access log would print each path with its token: ours replaces it.
    uvicorn.run(create_app(), host=host, port=port, access_log=False, server_header=False)
