"""What the explorer needs of the terminal: checked before Textual takes it (one line when it cannot run),
and its smallest usable size while it runs."""

from __future__ import annotations

import codecs
import os
import sys

# Measured with the five-model demo cache: at 60 columns every table column fits (the case id cut to 8),
# at 20 lines the stacked layout shows 4 table rows and the tiles with their first label lines. Smaller, the
# table loses its rows first (none at 40x12) and the help and models screens wrap into unreadable strips.
MIN_WIDTH, MIN_HEIGHT = 60, 20
IMAGE_PROTOCOLS = ("kitty", "sixel")


def too_small(width: int, height: int) -> bool:
    return width < MIN_WIDTH or height < MIN_HEIGHT


def too_small_message(width: int, height: int) -> str:
    return (f"Terminal too small: {width}x{height}; the explorer needs at least {MIN_WIDTH}x{MIN_HEIGHT} "
            f"(resize or use `gradfaith-tui report --terminal`)")


def _encoding(stream) -> str:
    name = getattr(stream, "encoding", None) or "ascii"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return name


def terminal_problem(cache, environ=os.environ, stdin=None, stdout=None, screen=None) -> str | None:
    """Why the explorer cannot draw here, in one line, or None. screen: the stream Textual draws on (stderr)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    screen = screen or sys.__stderr__
    report = f"`gradfaith-tui report --cache {cache} --terminal` for the tables"
    # Textual would draw into a pipe and wait for keys forever; a driver chosen in TEXTUAL_DRIVER (`textual serve`'s
    # web driver, which talks over pipes) needs no terminal.
    if environ.get("TEXTUAL_DRIVER"):
        return None
    if not (stdin.isatty() and stdout.isatty()):
        return f"explore: needs a terminal (stdin and stdout are not both one); run it in one, over ssh with -t, or use {report}"
    if environ.get("TERM", "") == "dumb":  # no cursor movement or colour: the full-screen UI would be garbage
        return f"explore: TERM=dumb cannot show the full-screen explorer; run it in a real terminal, or use {report}"
    for name, stream in (("stdout", stdout), ("stderr", screen)):  # Python escapes what it cannot encode as \uXXXX
        if _encoding(stream) != "utf-8":
            return (f"explore: needs a UTF-8 terminal: {name} encoding is {getattr(stream, 'encoding', None)}; "
                    f"set LANG=C.UTF-8 or PYTHONIOENCODING=utf-8")
    return None


def graphics_in_tmux(graphics: str, environ=os.environ) -> tuple[str, str | None]:
    """(the graphics to use, a notice): tmux does not pass the Kitty or Sixel image protocols through to the outer
    terminal, so the tiles would be drawn as escape-code garbage; half blocks instead."""
    if graphics in IMAGE_PROTOCOLS and environ.get("TMUX"):
        return "halfblock", (f"--graphics {graphics} does not work inside tmux (it does not pass images through): "
                             f"half-block tiles instead")
    return graphics, None
