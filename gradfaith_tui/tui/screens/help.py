"""The help screen: every key, what each metric means and which direction is good, and the models."""

from __future__ import annotations

import textwrap

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gradfaith_tui.metrics.catalog import METRICS
from gradfaith_tui.tui.keys import KEYS
from gradfaith_tui.tui.render import paper_label


COLOUR_WORDS = {"jet": "jet (blue low, green, yellow, red high)", "hot": "hot (black low, red, yellow, white high)",
                "viridis": "viridis (purple low, teal, yellow high)", "grey": "grey (black low, white high)"}


def help_text(width: int, columns, colormap: str = "jet", outline: str = "green") -> Text:
    """Keys, metric meanings and models, wrapped with a hanging indent to the help box's width."""
    width = max(40, min(int(width * 0.9), 110) - 7)  # box: 90%, border 2, padding 2, scrollbar 2, 1 spare
    text = Text()

    def item(head: str, body: str, indent: int) -> None:
        lines = textwrap.wrap(body, width - indent) or [""]
        text.append(f"  {head:<{indent - 2}}", "bold cyan")
        text.append(lines[0] + "\n" + "".join(" " * indent + ln + "\n" for ln in lines[1:]))

    for group, keys in KEYS:
        text.append(f"Keys: {group}\n", "bold underline")
        for key, what in keys:
            item(key, what, 28)
        text.append("\n")
    text.append("Metrics (the table's Faith, LocAcc, IoU and Consist: higher is better, and it shows the worst "
                "model's value or the chosen model's)\n", "bold underline")
    for m in METRICS.values():
        item(m.label, f"({'higher' if m.higher_is_better else 'lower'} is better) {m.meaning}", 15)
    text.append("\nMarks\n", "bold underline")
    for head, body in (("M1..", "one table column per model: predicted class initial, ✓ right, ✗ wrong."),
                       ("–", "the metric does not apply (no lesion mask) or is not computed; red: a low value."),
                       ("Fl", "your flag: U unfaithful, S shortcut, M mislocalised, F fine, N note only; ⚠ an engine "
                              "suspect, with its reason in words on the tile."),
                       ("tiles", f"the map upsampled (bicubic) and coloured with {COLOUR_WORDS.get(colormap, colormap)} "
                                 f"(C cycles the colormaps) over the slice; the {outline} outline is the lesion mask. Each map "
                                 "is scaled to its own lowest and highest value, so a colour compares places within "
                                 "one map, not across tiles: the numbers do that."),
                       ("flat", "after the prediction: the map has the same value everywhere (Grad-CAM gives all "
                                "zeros when no channel pushes the class up): it explains nothing.")):
        item(head, body, 15)
    text.append("\nModels\n", "bold underline")
    for i, c in enumerate(columns):
        item(f"M{i + 1}", f"{c.model.name}: {c.model.describe} for {paper_label(c.model.family)}", 15)
    text.append("\nescape closes this help.", "dim")
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close help")]

    def __init__(self, text: Text):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(self.text, id="help-text")
