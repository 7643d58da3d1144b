"""Every command documents itself: each option has a help line, defaults are shown, and the
descriptions render as written (issue 14 item 9)."""
import argparse

import pytest

from rlaif.cli import build_parser


def all_parsers(parser=None, path=("rlaif",)):
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, (*path, name))


PARSERS = list(all_parsers())


@pytest.mark.parametrize("path,parser", PARSERS, ids=[" ".join(p) for p, _ in PARSERS])
def test_every_option_has_help_and_defaults_are_shown(path, parser):
    missing = [a.dest for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))
               and not (a.help and a.help.strip())]
    assert not missing, f"{' '.join(path)}: options without help: {missing}"
    assert isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class,
                                                                   argparse.ArgumentDefaultsHelpFormatter)
    text = parser.format_help()
    assert "%%" not in text and "(default: None)" not in text


@pytest.mark.parametrize("command", ["run", "export", "merge", "judge", "sample", "pairs", "eval", "report"])
def test_commands_have_a_description(command):
    sub = dict(PARSERS)[("rlaif", command)]
    assert sub.description and len(sub.description) > 20


def test_eval_help_shows_a_plain_percent_sign():
    text = dict(PARSERS)[("rlaif", "eval")].format_help()
    assert "95% CI" in text and "95%%" not in text


def test_defaults_are_printed():
    assert "(default: 0.05)" in dict(PARSERS)[("rlaif", "judge")].format_help()


def test_pairs_format_takes_several_values_like_the_yaml_list():
    p = build_parser()
    assert p.parse_args(["pairs", "j.jsonl", "-o", "d", "--format", "parquet", "jsonl"]).format == ["parquet", "jsonl"]
    assert p.parse_args(["pairs", "j.jsonl", "-o", "d", "--format", "parquet", "--format", "jsonl"]).format == \
        ["parquet", "jsonl"]


@pytest.mark.parametrize("path,parser", PARSERS, ids=[" ".join(p) for p, _ in PARSERS])
def test_every_command_runs_a_function(path, parser):
    has_sub = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    assert has_sub or callable(parser.get_default("func")), f"{' '.join(path)} has no function to run"
