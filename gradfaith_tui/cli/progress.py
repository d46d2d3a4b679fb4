"""Rich progress bars for training and precompute, fed by the library's callbacks."""

from __future__ import annotations

from contextlib import contextmanager
from time import perf_counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

console = Console(stderr=True)


def tables_console() -> Console:
    """stdout for tables. Piped or logged, rich would assume 80 columns and cut model names to "resne…";
    there it takes COLUMNS, else 160."""
    import os
    import sys

    wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(width=160 if wide else None)


def warn(msg: str) -> None:
    """One line however long (a file name is never broken to fit 80 columns); the message is plain text,
    so a file named "scan[1].png" is not taken for markup."""
    from rich.text import Text

    console.print(Text.assemble(("warning:", "yellow"), " ", msg), soft_wrap=True, highlight=False)


def main_rank() -> bool:
    """Under torchrun only rank 0 reports; a plain run is rank 0."""
    import os

    return os.environ.get("RANK", "0") == "0"


@contextmanager
def bars():
    """Progress bars on rank 0; None on the other ranks, which stay silent."""
    if not main_rank():
        yield None
        return
    p = _StartedByFirstTask(TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                            BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                            console=console, transient=False)
    try:
        yield p
    finally:
        if p.live.is_started:
            p.stop()


class _StartedByFirstTask(Progress):
    """Shown from its first bar on, so a command that stops before any (a user's mistake) prints its one-line
    error alone: a started display prints an empty line on the way out where stderr is not a terminal."""

    def add_task(self, *args, **kwargs):
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)

    def make_tasks_table(self, tasks):
        """The counts, rate and time whole however narrow the terminal: the bar gives way first (down to 5
        cells), then the description, cut with an ellipsis. Left to rich, a long model name at 60 columns
        pushed every column down to "5…" and "0:0…"."""
        tasks = list(tasks)
        table = super().make_tasks_table(tasks)
        shown = [t for t in tasks if t.visible]
        if not shown:
            return table
        desc, bar, count, info, elapsed = table.columns
        need = [max(len(str(t.description)) for t in shown),
                max(2 * len(str(int(t.total or 0))) + 1 for t in shown),  # " 567/1234": done padded to total's width
                max(len(str(t.fields.get("info", ""))) for t in shown), 7]  # elapsed: 0:00:00
        free = self.console.width - sum(need[1:]) - 4  # four gaps of one cell
        bar_w = max(5, min(40, free - need[0]))
        self.columns[1].bar_width = bar_w
        desc.max_width = max(8, free - bar_w)
        for column, width in zip((count, info, elapsed), need[1:]):
            column.min_width = width
        return table


def fit_events(progress: Progress | None):
    from gradfaith_tui.models.fit import FitEvents
    from gradfaith_tui.models.train import NO_GRAPH

    if progress is None:
        return FitEvents()
    tasks: dict[str, int] = {}
    noted: set[str] = set()

    def start(model_id, epochs, batches, done=0):
        if done:  # a rerun after a kill or Ctrl-C: the bar starts where the saved epochs end
            progress.console.print(f"[dim]train {model_id}: resuming after epoch {done} of {epochs} (saved)[/]")
        tasks[model_id] = progress.add_task(f"train {model_id}", total=epochs * batches, completed=done * batches,
                                            info=f"epoch {done} saved" if done else "")

    def batch(model_id, epoch, b, n, loss):
        progress.update(tasks[model_id], completed=epoch * n + b, info=f"epoch {epoch + 1} loss {loss:.3f}")

    def epoch(model_id, e, row):
        progress.update(tasks[model_id], info=f"epoch {e} val acc {row['val_acc']:.2f}")
        via = row.get("steps_via", "")
        if via.startswith(NO_GRAPH) and model_id not in noted:  # graphs asked for, not recorded: say so once
            noted.add(model_id)
            progress.console.print(f"[dim]train {model_id}: {via}[/]")

    def skip(model_id):
        progress.console.print(f"[dim]train {model_id}: already trained, skipped[/]")

    return FitEvents(warn=warn, start=start, batch=batch, epoch=epoch, skip=skip)


MAPS_MADE: dict[str, int] = {}  # maps this run has written, per model: what an interrupted precompute says it kept


def precompute_progress(progress: Progress | None):
    if progress is None:
        return lambda *a: None
    tasks: dict[str, int] = {}
    start: dict[str, tuple[float, int]] = {}  # a resumed run counts from the cases it found done

    def update(model_id, done, total):
        now = perf_counter()
        if model_id not in tasks:
            tasks[model_id] = progress.add_task(f"explain {model_id}", total=total, info="")
            start[model_id] = (now, done)
        t0, d0 = start[model_id]
        MAPS_MADE[model_id] = done - d0  # called once each batch is committed
        rate = f"{(done - d0) / (now - t0):,.0f} maps/s" if done > d0 and now > t0 else ""
        progress.update(tasks[model_id], completed=done, info=rate)

    return update
