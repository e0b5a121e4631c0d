"""``radsight ai ...``: run models on demand and look at jobs."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from radsight.ai import jobs
from radsight.cli_common import HomeOpt, console, open_archive

app = typer.Typer(help="Run AI models and inspect jobs.", no_args_is_help=True)


def _print_jobs(views: list[jobs.JobView], as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(v) for v in views], indent=2))
        return
    table = Table("id", "model", "version", "series", "state", "attempts", "error", "results")
    for v in views:
        results = ""
        if v.result:
            results = " ".join(
                f"{k.split('_')[0].upper()}={v.result[k]}"
                for k in ("seg_sop_instance_uid", "sr_sop_instance_uid", "pmap_sop_instance_uid")
                if v.result.get(k)
            )
        table.add_row(
            str(v.id), v.model, v.version, v.series_instance_uid or "", v.state,
            f"{v.attempts}/{v.max_attempts}", v.error, results,
        )
    Console(soft_wrap=True).print(table)


@app.command("run")
def run(
    study: Annotated[str, typer.Argument(help="Study Instance UID")],
    model: Annotated[str | None, typer.Option("--model", help="Run only this installed model")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Run the jobs in this process and print the results")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds")] = 3600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON")] = False,
    home: HomeOpt = None,
) -> None:
    """Queue the models that match the study's series (a running server's workers take them)."""
    from radsight.ai.engine import ModelNotFound, StudyNotFound, request_run
    from radsight.ai.worker import run_claimed

    archive = open_archive(home)
    try:
        try:
            queued = request_run(archive, study, model_name=model, trigger="manual")
        except (StudyNotFound, ModelNotFound) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        if not queued:
            console.print(f"[red]no installed model matches a series of study {study}[/red]")
            raise typer.Exit(1)
        ids = [j.id for j in queued]
        if wait:
            worker_id = f"cli:{os.getpid()}"
            deadline = time.monotonic() + timeout
            while True:
                with archive.db.session() as s:
                    states = {j.id: j.state for j in (jobs.get_job(s, i) for i in ids) if j is not None}
                    if all(st in (jobs.DONE, jobs.FAILED) for st in states.values()):
                        break
                    job = jobs.claim(s, worker_id, archive.settings.ai_lease_seconds, job_ids=ids)
                if job is not None:
                    # Another process (a server's worker) may hold some: those are waited for.
                    run_claimed(archive, job)
                    continue
                if time.monotonic() > deadline:
                    console.print(f"[red]timed out waiting for jobs {ids}[/red]")
                    raise typer.Exit(2)
                time.sleep(0.2)
        with archive.db.session() as s:
            views = [jobs.JobView.of(j) for j in (jobs.get_job(s, i) for i in ids) if j is not None]
        _print_jobs(views, as_json)
        if wait and any(v.state == jobs.FAILED for v in views):
            raise typer.Exit(1)
    finally:
        archive.close()


@app.command("jobs")
def list_jobs(
    study: Annotated[str, typer.Argument(help="Study Instance UID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON")] = False,
    home: HomeOpt = None,
) -> None:
    """The study's AI jobs: state, attempts, error, result UIDs."""
    archive = open_archive(home)
    try:
        with archive.db.session() as s:
            views = [jobs.JobView.of(j) for j in jobs.jobs_for_study(s, study)]
        _print_jobs(views, as_json)
    finally:
        archive.close()
