"""The README stays true to the code: every setting, command and flag is documented."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from streams.cli import build_parser
from streams.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_variable_is_in_the_readme():
    missing = [f.metadata["env"] for f in fields(Settings) if f"`{f.metadata['env']}`" not in README]
    assert not missing


def test_every_command_and_flag_is_in_the_readme():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"`micromoment {name}" in README, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in README, f"{name} {flag}"


def test_quick_start_is_the_two_make_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.startswith("make ")]
    assert commands == ["make demo", "make test"]
