"""`layerprune <command> --help` explains every option in plain text (no raw reStructuredText)."""

from __future__ import annotations

import argparse
import re

import pytest

from layerprune.cli import COMMANDS, build_parser, plain_text

_RST = re.compile(r"``|:(func|class|mod|meth|attr|data):`")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_registered_and_every_option_has_help():
    parsers = _subparsers()
    assert set(parsers) == set(COMMANDS)
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"layerprune {name} {action.option_strings or action.dest}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_no_restructuredtext(name):
    parser = _subparsers()[name]
    text = parser.format_help()
    assert not _RST.search(text), f"layerprune {name} --help shows reStructuredText: {_RST.search(text).group(0)}"


def test_plain_text_unwraps_roles_and_literals():
    assert plain_text("see :func:`layerprune.summary.main_table` and ``summary.csv``") == (
        "see layerprune.summary.main_table and summary.csv"
    )
