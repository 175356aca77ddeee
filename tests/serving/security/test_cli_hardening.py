"""The CLI on bad input: one error line and exit 1, never a traceback; readable help."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from pipelines.cli import app as cli
from serving.store import PublicationStore
from tests.serving.security.conftest import Seeded, invoke


@pytest.mark.parametrize(
    "until", ["garbage", "9999-12-31T23:00-05:00", "2025-13-01", "0000-01-01", "1e999"]
)
def test_override_with_a_bad_until_is_one_error_line(seeded: Seeded, until: str) -> None:
    result = invoke(
        seeded,
        "policy",
        "override",
        "BTCUSDT",
        "1.2",
        "--operator",
        "ops",
        "--note",
        "bad until",
        "--until",
        until,
    )
    assert result.exit_code == 1
    assert "error" in result.output.lower()
    with PublicationStore(seeded.url) as store:
        assert store.audit_log() == []


@pytest.mark.parametrize("note", ["   ", " a ", "\u200b\u200b\u200b", "ok\x1b[2J"])
def test_a_note_needs_three_visible_characters(seeded: Seeded, note: str) -> None:
    result = invoke(seeded, "policy", "halt", "BTCUSDT", "--operator", "ops", "--note", note)
    assert result.exit_code == 1
    with PublicationStore(seeded.url) as store:
        assert store.audit_log() == []


def _commands(command, path: tuple[str, ...] = ()):
    # Typer vendors its own click, so groups are recognised by their sub-commands.
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


BRACKETED = re.compile(r"\[[a-z][a-z_, ]*\]")


def test_help_texts_keep_their_square_brackets() -> None:
    root = get_command(cli)
    checked = 0
    for path, command in _commands(root):
        sources = [command.help or ""] + [
            getattr(param, "help", None) or "" for param in command.params
        ]
        wanted = {m for text in sources for m in BRACKETED.findall(text)}
        if not wanted:
            continue
        output = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200).output
        flat = " ".join(output.split())
        for bracketed in wanted:
            assert bracketed in flat, f"`dynamargin {' '.join(path)} --help` lost {bracketed}"
        checked += 1
    assert checked >= 2  # policy override ([floor, cap]) and every --config ([policy])
