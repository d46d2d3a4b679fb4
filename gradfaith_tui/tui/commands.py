"""Command palette entries (ctrl+p): every sort, model, filter, triage, screen and overlay action by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from gradfaith_tui.config import CLASS_NAMES
from gradfaith_tui.store.flags import CATEGORIES


class ExplorerCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        """(name, help, action string) for the running explorer."""
        app = self.app
        out = [(f"Sort by {label}", f"lowest {label} first (r reverses)", f"sort('{key}')")
               for key, label in (("faith", "Faith"), ("locacc", "LocAcc"), ("consist", "Consist"), ("iou", "IoU"),
                                  ("confidence", "confidence"))]
        out += [("Sort by most models wrong", "", "sort('wrong')"), ("Sort by case id", "", "sort('case')"),
                ("Reverse the order", "descending / ascending", "reverse"),
                ("Model: worst across models", "sorts and filters use the worst model", "set_model(-1)")]
        out += [(f"Model: M{i + 1} {c.model.name}", "sorts, filters and metric columns use this model", f"set_model({i})")
                for i, c in enumerate(app.source.columns)]
        for k, name in enumerate(CLASS_NAMES):
            out.append((f"Filter: true class {name}", "", f"set_filter('true_class', {k})"))
            out.append((f"Filter: predicted {name}", "by the chosen model, or any model", f"set_filter('pred_class', {k})"))
        out += [("Filter: wrong predictions", "", "set_filter('correct', False)"),
                ("Filter: right predictions", "", "set_filter('correct', True)"),
                ("Filter: engine suspects", "", "set_filter('suspect', True)"),
                ("Filter: flagged cases", "any user flag or note", "set_filter('flagged', 'any')"),
                *((f"Filter: flagged {c}", "", f"set_filter('flagged', '{c}')") for c in CATEGORIES),
                ("Filter: notes without a flag", "", "set_filter('flagged', 'note')"),
                ("Search case ids", "", "search"), ("Clear filters", "", "clear_filters")]
        out += [(f"Flag as {c}", "again on a flagged case: unflag", f"flag('{c}')") for c in CATEGORIES]
        out += [("Remove flag", "", "unflag"), ("Write a note", "", "note"), ("Undo the last flag or note", "", "undo"),
                ("Export flagged cases", "CSV and JSON with metrics and notes", "export"),
                ("Zoom the case", "one model's heatmap large", "zoom"), ("Models screen", "Table I, histograms", "models"),
                ("Help", "keys and metrics", "help"), ("Next colormap", "", "cycle_colormap"),
                ("Toggle lesion outline", "", "toggle_outline"), ("Toggle heatmap alone", "", "toggle_alone"),
                ("Less heat", "more of the slice through the heatmap", "opacity(-0.1)"),
                ("More heat", "less of the slice through the heatmap", "opacity(0.1)"),
                ("Reload the cache", "maps a running precompute added since", "reload")]
        return out

    def _run(self, action: str) -> None:
        app = self.app

        async def go() -> None:  # once the palette has closed: the screen under it decides
            name = action.split("(")[0]
            if app.check_action(name, ()) is not False:
                await app.run_action(action)
            elif hasattr(app.screen, f"action_{name}"):  # the zoom flags, notes and undoes its own case
                await app.run_action(f"screen.{action}")
            else:  # a sort or filter over the zoom, say: it would change a table the user cannot see
                app.notify("that acts on the case table: escape back to it first", severity="warning")
        app.call_later(go)

    async def discover(self) -> Hits:
        for name, help_, action in self._commands():
            yield DiscoveryHit(name, partial(self._run, action), help=help_ or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_, action in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self._run, action), text=name, help=help_ or None)
