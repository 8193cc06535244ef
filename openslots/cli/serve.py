"""`openslots serve`: the Prefect server, every flow on its schedule and the listeners, in one
command (see `openslots.serve`)."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from openslots.cli.output import err, fail, run
from openslots.errors import OpenslotsError


def serve_command(
    port: Annotated[
        int, typer.Option(help="Port of the Prefect server (and its UI) that serve starts.")
    ] = 4200,
    host: Annotated[str, typer.Option(help="Address every server started here binds.")] = (
        "127.0.0.1"
    ),
    mllp_port: Annotated[
        int | None, typer.Option(help="Also run the MLLP listener on this port (HL7 over TCP).")
    ] = None,
    web_port: Annotated[
        int | None, typer.Option(help="Also serve the patient pages (`openslots web`) here.")
    ] = None,
) -> None:
    """Run everything a practice needs until Ctrl-C or SIGTERM: upgrade the database, start a
    Prefect server (unless PREFECT_API_URL names one), serve every flow on its schedule
    (dispatch each minute, HL7 drop and ingest, the nightly roster sync from the drop
    directory), optionally the MLLP listener and the patient pages. CLI commands run in this
    directory meanwhile use its server instead of starting a temporary one."""
    from openslots.connectors.database import upgrade_database
    from openslots.serve import prepare_drop_directories, run_deployments, started, summary
    from openslots.settings import get_settings

    settings = get_settings()
    revision = run(False, lambda: upgrade_database(settings))
    err.print(f"database at revision {revision}")
    prepare_drop_directories(settings)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        with started(
            settings, host=host, port=port, mllp_port=mllp_port, web_port=web_port
        ) as served:
            for line in summary(served, settings):
                err.print(line, soft_wrap=True)
            err.print("serving (Ctrl-C to stop)")
            run_deployments(served, settings)
    except KeyboardInterrupt:
        pass
    except OpenslotsError as exc:
        raise fail(str(exc), False) from None
    err.print("stopped: every process serve started has exited")
