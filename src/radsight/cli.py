"""The ``radsight`` command (Typer)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from radsight import __version__
from radsight.ai import cli_ai, cli_model
from radsight.cli_common import HomeOpt, console, open_archive
from radsight.config import DuplicatePolicy
from radsight.train import cli as cli_train

app = typer.Typer(help="RadSight: DICOM archive, DICOMweb and DIMSE, AI triage and viewer.",
                  no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
ae_app = typer.Typer(help="Manage remote DICOM AEs (peers).", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(ae_app, name="ae")
app.add_typer(cli_model.app, name="model")
app.add_typer(cli_ai.app, name="ai")
app.add_typer(cli_train.app, name="train")
app.command("evaluate")(cli_train.evaluate)
_open = open_archive


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@app.command()
def serve(
    home: HomeOpt = None,
    http_port: Annotated[int | None, typer.Option("--http-port", help="HTTP port (default 8042)")] = None,
    dicom_port: Annotated[int | None, typer.Option("--dicom-port", help="DICOM port (default 11112)")] = None,
    ae_title: Annotated[str | None, typer.Option("--ae-title", help="Our AE title (default RADSIGHT)")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1)")] = None,
) -> None:
    """Run the archive: HTTP (REST, DICOMweb, viewer) and the DICOM listener."""
    from radsight.server import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    archive = _open(home, http_port=http_port, dicom_port=dicom_port, ae_title=ae_title, http_host=host)
    run(archive)


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders, ZIP archives, DICOMDIR media")],
    home: HomeOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace instances already stored")] = False,
    fill_missing_uids: Annotated[
        bool, typer.Option(help="Fill empty Study/Series/SOP Instance UIDs instead of refusing the file")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every refused and skipped file")] = False,
    log_stored: Annotated[
        bool,
        typer.Option("--log-stored", help="Print 'stored <SOP Instance UID> <file>' as each instance is acknowledged"),
    ] = False,
) -> None:
    """Import DICOM files into the archive, with a summary of what was stored and refused."""
    from radsight.ingest.events import IngestResult
    from radsight.ingest.importer import import_paths

    def acknowledge(name: str, result: IngestResult) -> None:
        # Printed (and flushed) only after the instance is stored and indexed: a line seen
        # by the operator or a script is a promise that the instance survives a crash.
        if result.ok:
            print(f"{result.outcome.value} {result.sop_instance_uid} {name}", flush=True)

    archive = _open(home, duplicate_policy=DuplicatePolicy.OVERWRITE if overwrite else None)
    with Progress(TextColumn("[bold]import"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=log_stored) as bar:
        task = bar.add_task("import", total=None)
        summary = import_paths(archive.ingest, paths, fill_missing_uids=fill_missing_uids,
                               progress=lambda _n: bar.advance(task), on_result=acknowledge if log_stored else None)
    archive.close()
    table = Table(title="Import summary")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    outcomes = ("stored", "overwritten", "duplicate", "refused", "skipped")
    for outcome in outcomes:
        table.add_row(outcome, str(summary.counts.get(outcome, 0)))
    Console().print(table)
    print("summary: " + ", ".join(f"{o} {summary.counts.get(o, 0)}" for o in outcomes))
    for kind, entries in (("refused", summary.refused), ("skipped", summary.skipped)):
        shown = entries if verbose else entries[:20]
        for name, why in shown:
            print(f"{kind}: {name}: {why}")
        if len(entries) > len(shown):
            print(f"... and {len(entries) - len(shown)} more {kind} (use --verbose)")


@app.command()
def check(
    home: HomeOpt = None,
    repair: Annotated[bool, typer.Option(help="Remove stored files that no index row refers to")] = False,
) -> None:
    """Verify that storage and index agree; exit 1 if they do not."""
    from radsight.check import check_archive

    archive = _open(home)
    report = check_archive(archive, repair=repair)
    archive.close()
    print(f"instances indexed: {report.instances}; files stored: {report.files}")
    for uid, key in report.missing_files:
        print(f"MISSING FILE: instance {uid} -> {key}")
    for uid, key, want, got in report.size_mismatches:
        print(f"SIZE MISMATCH: instance {uid} -> {key}: index {want} bytes, file {got} bytes")
    for key in report.orphan_files:
        note = " (removed)" if key in report.removed_orphans else " (recent, kept: may be in flight)" if repair else ""
        print(f"ORPHAN FILE{note}: {key}")
    if report.ok:
        print("OK: storage and index agree")
    else:
        raise typer.Exit(1)


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[str, typer.Option(help="admin, radiologist, technologist or viewer")] = "viewer",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    home: HomeOpt = None,
) -> None:
    """Create a user."""
    from radsight.api.auth import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    archive = _open(home)
    try:
        with archive.db.session() as s:
            add_user(s, name, password, role)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    print(f"user {name} added with role {role}")


@user_app.command("list")
def user_list(home: HomeOpt = None) -> None:
    """List users."""
    from sqlalchemy import select

    from radsight.index.models import User

    archive = _open(home)
    with archive.db.session() as s:
        for u in s.scalars(select(User).order_by(User.username)):
            print(f"{u.username}\t{u.role}")
    archive.close()


@ae_app.command("add")
def ae_add(
    title: str,
    host: Annotated[str, typer.Option(help="Host name or address")],
    port: Annotated[int, typer.Option(help="DICOM port")],
    description: Annotated[str, typer.Option(help="Free text")] = "",
    home: HomeOpt = None,
) -> None:
    """Register (or update) a remote AE: allowed to connect, and a C-MOVE / send destination."""
    from radsight.dimse.peers import add_peer

    archive = _open(home)
    try:
        with archive.db.session() as s:
            add_peer(s, title, host, port, description)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    print(f"remote AE {title} -> {host}:{port}")


@ae_app.command("list")
def ae_list(home: HomeOpt = None) -> None:
    """List remote AEs."""
    from radsight.dimse.peers import list_peers

    archive = _open(home)
    with archive.db.session() as s:
        for p in list_peers(s):
            print(f"{p.ae_title}\t{p.host}\t{p.port}\t{p.description}")
    archive.close()


@ae_app.command("remove")
def ae_remove(title: str, home: HomeOpt = None) -> None:
    """Remove a remote AE."""
    from radsight.dimse.peers import remove_peer

    archive = _open(home)
    with archive.db.session() as s:
        found = remove_peer(s, title)
    archive.close()
    if not found:
        console.print(f"[red]no remote AE {title!r}[/red]")
        raise typer.Exit(1)
    print(f"removed {title}")


@app.command()
def send(
    study: Annotated[str, typer.Argument(help="Study Instance UID")],
    to: Annotated[str, typer.Option("--to", help="Remote AE title (registered with `radsight ae add`)")],
    home: HomeOpt = None,
) -> None:
    """Send a study to a remote AE with C-STORE."""
    from radsight.dimse.scu import send_study

    archive = _open(home)
    try:
        report = send_study(archive, study, to)
    except (LookupError, ConnectionError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    print(f"sent {report.sent}, failed {report.failed}")
    if report.failed:
        raise typer.Exit(1)


def _default_shared_data() -> Path:
    # A source checkout sits beside shared/ (the project's data lives in ../shared/data).
    return Path(__file__).resolve().parents[3] / "shared" / "data"


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the demo DICOM files into")],
    cxr: Annotated[int, typer.Option("--cxr", min=0, help="How many chest X-rays (balanced NORMAL / PNEUMONIA)")] = 40,
    shared_data: Annotated[
        Path | None,
        typer.Option("--shared-data", envvar="RADSIGHT_SHARED_DATA", help="Shared real data (default ../shared/data)"),
    ] = None,
) -> None:
    """Write demo DICOM from the real shared images: chest X-rays as DX and the NIfTI CT as a CT series."""
    from radsight.datasets import write_demo_data

    data = shared_data or _default_shared_data()
    if not data.is_dir():
        console.print(f"[red]shared data not found at {data} (use --shared-data or RADSIGHT_SHARED_DATA)[/red]")
        raise typer.Exit(2)
    written = write_demo_data(out_dir, data, cxr_count=cxr)
    print(f"wrote {len(written.chest_xrays)} chest X-rays (DX) and a {len(written.ct_series)}-slice CT series "
          f"to {out_dir}")
