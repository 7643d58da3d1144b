"""The command line: each command is a thin shell over the public function of the same name.

`rlaif judge` → rlaif.judge(), `rlaif rubric lint` → rlaif.rubrics.lint(), and so on; one file per
command group (judge.py, rubric.py, data.py, run.py, train.py, eval.py), the flags several commands
share defined once in common.py. Errors rlaif raises on purpose (RlaifError, ConfigError for bad
options) print as one clear message and exit 2; anything else is a bug and keeps its traceback.
A bad option reads as the flag the user typed (`--rpm`, not the option model's `rpm`), and argparse's
own refusals are one line too (the usage is one `--help` away), so every refusal is one line.
"""
from __future__ import annotations

import argparse
import re
import sys

from rlaif.cli.common import HelpFormatter, stderr
from rlaif.errors import ConfigError, Problem, RlaifError


class Parser(argparse.ArgumentParser):
    """argparse, but a refused option is one line naming it and pointing at --help (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# Option fields whose CLI flag is not `--` + the field name with dashes.
ALIASES = {"learning_rate": "--lr", "output_dir": "--output", "lora.r": "--lora-r", "lora.alpha": "--lora-alpha",
           "lora.dropout": "--lora-dropout", "n_boot": "--bootstrap", "rubrics_dirs": "--rubrics-dir",
           "prompts_dirs": "--prompts-dir", "rewards": "--reward", "weights": "--weight", "n": "-n",
           "num_generations": "-G", "loss_type": "--loss"}


def as_flags(e: ConfigError, command: argparse.ArgumentParser | None) -> ConfigError:
    """An option model's ConfigError with each field named by the command's flag for it (where the
    command's help lists that flag; otherwise the field name stays)."""
    text = command.format_help() if command is not None else ""

    def flag(name: str) -> str:
        f = ALIASES.get(name, "--" + name.replace("_", "-"))
        return f if re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text) else name

    return ConfigError([Problem(flag(p.where), p.message) for p in e.problems])


def build_parser() -> argparse.ArgumentParser:
    from rlaif.cli.data import add_merge, add_sample_pairs
    from rlaif.cli.eval import add_eval, add_report
    from rlaif.cli.judge import add_judge
    from rlaif.cli.rubric import add_rubric, add_rubric_test
    from rlaif.cli.run import add_run
    from rlaif.cli.scale import add_parsers as add_scale
    from rlaif.cli.train import add_training
    from rlaif.version import __version__

    parser = Parser(prog="rlaif", description="AI judges → preference datasets → LoRA DPO/GRPO.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"rlaif {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # in the order of the loop: sample -> judge -> pairs (run does all three) -> train -> eval
    add_sample_pairs(sub)
    add_run(sub)
    add_judge(sub)
    add_training(sub)
    add_eval(sub)
    add_rubric_test(add_rubric(sub))
    add_report(sub)
    add_merge(sub)
    add_scale(sub)       # serve reward, export rl-data: hand-off to TRL/OpenRLHF/verl (docs/scale.md)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        command = getattr(args, "command_parser", None)
        options = isinstance(e.source, str) and e.source.endswith("options")
        stderr(f"error: {as_flags(e, command) if options else e}")
        return 2
    except RlaifError as e:
        stderr(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        stderr("interrupted; rows written so far are intact")
        return 130
    except BrokenPipeError:            # `rlaif ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0


__all__ = ["main", "build_parser"]
