"""The report's "Sanity check" and "Shortcut suspects" sections as Markdown."""

from __future__ import annotations

from gradfaith_tui.report.checks import Sanity, Suspects
from gradfaith_tui.report.tables import markdown_table
from gradfaith_tui.report.words import and_list, count, num
from gradfaith_tui.store.planted import Planted, share_text

NOT_COMPUTED = "Not computed in this cache"
NO_SUSPECTS = "No case crossed a suspect threshold"


def _esc(text) -> str:
    from gradfaith_tui.report.markdown import escape  # markdown imports this module

    return escape(text)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "**FAIL**"


def sanity_section(s: Sanity) -> list[str]:
    out = ["## Sanity check: cascading model-parameter randomisation\n",
           "Each stage re-initialises more of the network, from the output layer down, and compares the method's maps "
           "with the trained model's on the same cases (mean Spearman rank correlation). Maps that stay similar while "
           "the network is destroyed do not depend on what the model learned. The cases are taken from each class "
           "in turn; a randomised map that comes out flat (all zero) has no ranking and counts as 0, a map changed "
           "completely. "
           f"**A method FAILS for a model when the mean Spearman after the last stage is ≥ {s.threshold:.2f}**.\n"]
    if not s.results:
        return out + [f"*{NOT_COMPUTED}* for this method (precompute runs it for each reference model unless "
                      f"`--sanity-cases 0`).\n", *other_methods(s)]
    rows = [[_esc(r.model_id), _esc(r.method), str(len(r.stages)), str(r.stages[-1].n_cases), num(r.final),
             verdict(r.passed)] for r in s.results]
    out.append(markdown_table(["Model", "Method", "Stages", "Cases", "Last-stage Spearman", "Verdict"], rows) + "\n")
    failed = [f"{_esc(r.model_id)} ({_esc(r.method)})" for r in s.results if not r.passed]
    out.append(f"{len(s.results) - len(failed)} of {len(s.results)} pass"
               + (f"; failing: {', '.join(failed)}.\n" if failed else ".\n"))
    if s.unchecked:
        out.append(f"No sanity check stored for: {_esc(', '.join(s.unchecked))}.\n")
    rows = [[_esc(r.model_id), _esc(r.method), str(st.stage), _esc(st.added.replace(",", ", ")), num(st.spearman)]
            for r in s.results for st in r.stages]
    out.append("Stages (each one keeps the earlier stages' re-initialisation):\n\n"
               + markdown_table(["Model", "Method", "Stage", "Re-initialised at this stage", "Spearman"], rows) + "\n")
    return out + other_methods(s)


def other_methods(s: Sanity) -> list[str]:
    """Other methods' verdicts are about their maps, not these: named, with the command that reports each."""
    if not s.other_methods:
        return []
    one = len(s.other_methods) == 1
    return [f"Checks of {and_list(s.other_methods)} maps are stored too: "
            + and_list(f"`gradfaith-tui report --method {m}`" for m in s.other_methods)
            + f" report{'s' * one} {'them' if one else 'each'}.\n"]


def suspects_section(s: Suspects) -> list[str]:
    out = ["## Shortcut suspects\n",
           "A case is a suspect for a model when the evidence of its map crosses a documented threshold: heat where a "
           "lung lesion cannot be, or a prediction that depends on what lies outside the lungs or outside the body.\n",
           markdown_table(["Rule", "Threshold", "In words"],
                          [[r.name, _esc(r.threshold), _esc(r.words)] for r in s.rules]) + "\n"]
    if not s.computed:
        return out + [f"*{NOT_COMPUTED}*: it has no suspects table.\n"]
    if not s.total:
        return out + [f"**{NO_SUSPECTS}** in this cache.\n"]
    names = s.rule_names
    rows = [[_esc(model), *(str(c.get(r, 0)) for r in names), str(s.cases.get(model, 0))] for model, c in s.counts.items()]
    out.append("Suspects per model and rule (a case may cross more than one rule):\n\n"
               + markdown_table(["Model", *names, "Cases"], rows) + "\n")
    rows = [[_esc(e["case_id"]), e["label"], _esc(e["model_id"]), _esc(e["rule"]), num(e["value"], 2), _esc(e["reason"])]
            for e in s.examples]
    out.append("Examples (the strongest evidence per rule):\n\n"
               + markdown_table(["Case", "True class", "Model", "Rule", "Value", "Reason"], rows) + "\n")
    return out


def _of(part: int | None, whole: int) -> str:
    return "–" if part is None else f"{part} of {whole}"


def planted_section(p: Planted) -> list[str]:
    """Only for caches of phantoms with a planted marker: elsewhere there is no such truth to show."""
    if not p.computed:
        return []
    out = ["## Planted shortcut: ground truth\n",
           "These phantoms carry a burned-in marker on some slices of one class, and the marker's place is known. "
           "Painting it out and predicting again shows whether a model **relied** on it; where it did, a faithful "
           f"map puts heat on the marker, which covers {share_text(p.area)} of the slice (what an evenly spread map would "
           "give it). The suspect rules are scored against the same truth. Reference seeds; median heat shares.\n"]
    rows = [[_esc(r.model_id), str(r.marked), f"{r.relied} ({share_text(r.relied / r.marked if r.marked else float('nan'))})",
             num(r.mean_drop, sign=True), share_text(r.heat_relied), share_text(r.heat_other), _of(r.caught, r.relied),
             _of(r.flagged_unmarked, r.unmarked)] for r in p.rows]
    out.append(markdown_table(["Model", "Marked", "Relied on it", "Mean drop", "Heat on marker (relied)",
                               "Heat on marker (not relied)", "Suspect rules caught", "Flagged, unmarked"], rows) + "\n")
    relied = p.relied
    if relied and p.rules:
        out.append("Each suspect rule against the truth (reference seeds together, so counted in model-slice pairs: a "
                   "slice counts once for each model):\n\n" + markdown_table(
            ["Rule", "Relied-on pairs caught", "Unmarked pairs flagged"],
            [[s.rule, f"{s.caught} of {relied}", f"{s.flagged_unmarked} of {p.unmarked}"] for s in p.rules]) + "\n")
    if not relied:
        out.append("No model changed its prediction when the marker was painted out: none relied on it here.\n")
        return out
    shown = [r for r in p.rows if r.relied and r.heat_relied == r.heat_relied]
    unseen = [_esc(r.model_id) for r in shown if r.heat_relied < 2 * p.area]
    caught = "" if any(r.caught is None for r in p.rows) else f"; the suspect rules caught {sum(r.caught for r in p.rows)} of them"
    out.append(f"{count(relied, 'relied-on model-slice pair')} in all{caught}. "
               + (f"Where they relied on the marker, the maps of {and_list(unseen)} put less than twice an even "
                  "share of heat on it: those maps hide the shortcut the model used.\n" if unseen else
                  "Where a model relied on the marker, its map put more heat on it than an even spread would.\n"))
    return out
