"""A rich table whose numbers stay whole in a narrow terminal.

Rich shrinks every column of a table wider than the terminal, numbers too, and a cut number ("0.…") reads as
no number or as another one. Here the right-aligned columns, which hold the numbers, keep their widest cell:
their headers shorten first, then the text columns (model names) fold onto more lines, then the borders go;
narrower still, each row becomes a block of `header  value` lines.
"""

from __future__ import annotations

from rich import box
from rich.cells import cell_len
from rich.table import Table

TEXT_LEAST = 8  # a text column folds down to this many characters, not fewer, before the borders go
# Each one tried in turn until the numbers fit: as made, then without side borders, then single-space gaps.
PLAIN = [dict(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0)),
         dict(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0))]


def _text(cell) -> str:
    return cell.plain if hasattr(cell, "plain") else str(cell)


class NumbersTable(Table):
    """A Table (same arguments) laid out for the width it is drawn at; see the module's docstring."""

    def __rich_console__(self, console, options):
        if self._fit(options.max_width):
            yield from super().__rich_console__(console, options)
        else:
            yield self._records()

    def _records(self) -> Table:
        """Too narrow for the numbers side by side: each row as a block of `header  value` lines."""
        t = Table(title=self.title, caption=self.caption, box=None, show_header=False, padding=(0, 1, 0, 0))
        t.add_column(overflow="fold")
        t.add_column(justify="right", no_wrap=True)
        cols = self.columns
        for row in zip(*(c.cells for c in cols)):
            t.add_row(row[0], "", style="bold")
            for c, cell in zip(cols[1:], row[1:]):
                t.add_row(f"  {_text(c.header)}", cell)
        return t

    def _fit(self, width: int) -> bool:
        """Columns sized for width, False where even the tightest layout cuts a number. Planned again at each
        drawing (the width can change), with rich's own sizes of borders and padding."""
        if not hasattr(self, "_as_made"):
            self._as_made = dict(box=self.box, show_edge=self.show_edge, pad_edge=self.pad_edge, padding=self.padding)
            self._no_wrap = [c.no_wrap for c in self.columns]
        cols = self.columns
        numeric = [c.justify == "right" for c in cols]
        widest = [max((cell_len(_text(x)) for x in c.cells), default=1) for c in cols]
        want = [max(w, cell_len(_text(c.header))) for w, c in zip(widest, cols)]
        least = [w if n else min(w, TEXT_LEAST) for w, n in zip(widest, numeric)]
        for style in (self._as_made, *PLAIN):
            for key, value in style.items():
                setattr(self, key, value)
            room = width - self._extra_width - sum(self._get_padding_width(i) for i in range(len(cols)))
            if sum(least) <= room:
                break
        else:
            return False
        fits = sum(want) <= room
        widths = want if fits else _squeeze(want, least, numeric, room)
        for c, w, full, n, no_wrap in zip(cols, widths, want, numeric, self._no_wrap):
            c.width = None if fits else w
            c.no_wrap = n or (no_wrap and w >= full)  # a number never wraps; a name folds where it must
            c.overflow = "ellipsis" if n else "fold"  # in a number column only a header is ever cut
        return True


def _squeeze(want: list[int], least: list[int], numeric: list[bool], room: int) -> list[int]:
    """Widths within room: the number columns lowered first (to their widest number), then the text columns."""
    widths = list(want)
    for group in ([i for i, n in enumerate(numeric) if n], [i for i, n in enumerate(numeric) if not n]):
        for level in range(max((want[i] for i in group), default=0), 0, -1):
            if sum(widths) <= room:
                break
            for i in group:
                widths[i] = max(least[i], min(want[i], level))
    return widths
