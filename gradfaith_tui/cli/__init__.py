"""The `gradfaith-tui` command: one Typer sub-app per area; known errors become one line and exit code 2.

Heavy imports (torch, timm) happen inside the commands, so `explore` and `--help` start fast.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
from typing import Annotated

import typer

from gradfaith_tui import __version__
from gradfaith_tui.cli import audit, data, demo, models
from gradfaith_tui.errors import GradfaithError

app = typer.Typer(help="Audit whether Grad-CAM heatmaps of lung-CT classifiers can be trusted.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(data.app, name="data")
app.command()(models.train)
app.command()(models.evaluate)
app.command("import")(models.import_model)
app.command()(audit.precompute)
app.command()(audit.explore)
app.command()(audit.report)
app.command()(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradfaith-tui {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Audit whether Grad-CAM heatmaps of lung-CT classifiers can be trusted."""


def _usage_errors() -> tuple[type[Exception], ...]:
    """Click's errors for a mistyped command, option or value: Typer >= 0.2x raises those of its own copy of
    Click (under typer.TyperException), older ones Click's."""
    import click

    return (click.ClickException, *[e for e in [getattr(typer, "TyperException", None)] if e is not None])


KEPT_ON_INTERRUPT = {  # what each command has kept when Ctrl-C stops it, in the words the user needs next
    "train": "finished epochs are saved, rerun to resume",
    "demo": "finished epochs are saved",  # and _maps_kept()
    "evaluate": "nothing was written (its tables are written at the end), rerun it",
    "report": "the report was not written (one already in --out is as it was), rerun it",
    "import": "rerun it to finish the import",
}


def _kept_on_interrupt(args: list[str]) -> str:
    """What an interrupted command keeps: phantoms are written whole or not at all; training and maps resume."""
    if args[:2] == ["data", "synth"]:
        return "no phantoms were written; the folder is as it was"
    if args[:1] == ["precompute"]:
        return _maps_kept()
    if args[:1] == ["demo"]:
        return f"{KEPT_ON_INTERRUPT['demo']}; {_maps_kept()}"
    return KEPT_ON_INTERRUPT.get(args[0] if args else "", "stopped, rerun it")


def _maps_kept() -> str:
    """Counted, not assumed: a Ctrl-C while models load (or data are read) has made no map yet."""
    from gradfaith_tui.cli.progress import MAPS_MADE

    n = sum(MAPS_MADE.values())
    if not n:
        return "no maps were made yet, so none were saved, rerun it"
    return f"{n:,} map{'s' if n != 1 else ''} made by this run {'are' if n != 1 else 'is'} saved, rerun to resume"


def _on_ctrl_c(signum, frame) -> None:
    """The first Ctrl-C stops the command; a second one while it closes (saving, torch's own exit handlers)
    would cut that short with a traceback, so it only says what is happening; a third stops at once."""
    def again(signum, frame) -> None:
        print("gradfaith-tui: finishing up (what is done is saved); Ctrl-C once more stops at once", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGINT, again)
    raise KeyboardInterrupt


def main() -> None:
    code: object = 0
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where a host program chose its own
        signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        code = app(prog_name="gradfaith-tui", standalone_mode=False)  # every error comes back here: one line
    except _usage_errors() as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print(f"gradfaith-tui: error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # Ctrl-C under older Typer (Click's Abort), or end of input at a prompt
        if not isinstance(exc.__context__, KeyboardInterrupt):
            sys.exit(1)
        code = 130
    except GradfaithError as exc:
        print(f"gradfaith-tui: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a path the user gave that cannot be written or read (permissions, a full disk...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gradfaith-tui: error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(GradfaithError.exit_code)
    except sqlite3.OperationalError as exc:  # a cache another process holds locked, a full disk, a read-only folder
        full = " (what was committed before is kept: free some space and rerun)" if "full" in str(exc) else ""
        print(f"gradfaith-tui: error: the cache's database: {exc}{full}", file=sys.stderr)
        sys.exit(GradfaithError.exit_code)
    except sqlite3.DatabaseError as exc:  # a database file damaged where no check of ours reached
        print(f"gradfaith-tui: error: the cache's database: {exc} (not an audit cache, or damaged; use a new --cache "
              f"folder)", file=sys.stderr)
        sys.exit(GradfaithError.exit_code)
    except MemoryError:  # sizes the user asked for that this machine cannot hold (train and precompute say more)
        print("gradfaith-tui: error: out of memory: lower the sizes asked for (--size, --img-size, --batch-size)",
              file=sys.stderr)
        sys.exit(GradfaithError.exit_code)
    except KeyboardInterrupt:  # outside a command (Typer turns one inside into exit code 130, below)
        code = 130
    if code == 130:
        print(f"gradfaith-tui: interrupted; {_kept_on_interrupt(sys.argv[1:])}", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
