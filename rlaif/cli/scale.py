"""CLI commands for running rlaif inside other engines: `rlaif serve reward`, `rlaif export rl-data`.

The commands that hand rlaif to other engines (TRL / OpenRLHF / verl / Ray) in one place; the
CLI registers them with `add_parsers(sub)` after the training group (whose `export` this extends).
Each handler is a thin shell over the public function of the same name (rlaif.serve.serve_reward,
rlaif.integrations.verl.export_rl_data).
"""
from __future__ import annotations

import sys

from rlaif.cli.common import parser
from rlaif.train.reward_spec import FORMS as REWARD_FORMS


def cmd_serve_reward(args) -> int:
    from pydantic import ValidationError

    from rlaif.errors import ConfigError, Problem
    from rlaif.serve import RewardServerConfig, serve_reward

    try:
        cfg = RewardServerConfig(rewards=args.reward, weights=args.weight, host=args.host, port=args.port,
                                 token_env=args.token_env, unscored_reward=args.unscored_reward,
                                 concurrency=args.concurrency, max_body_mb=args.max_body_mb, base_url=args.base_url,
                                 max_cost=args.max_cost, timeout=args.timeout, max_retries=args.max_retries,
                                 cache=False if args.no_cache else None, ledger=args.ledger)
    except ValidationError as e:     # every problem at once; main() names each field by its flag
        raise ConfigError([Problem(".".join(map(str, x["loc"])), f"{x['msg']} (got {x.get('input')!r})")
                           for x in e.errors()], source="options") from None
    serve_reward(cfg)
    return 0


def add_serve(sub) -> None:
    p = parser(sub, "serve", help="serve rlaif rewards over HTTP (OpenRLHF --remote_rm_url, verl, any caller)")
    ss = p.add_subparsers(dest="serve_cmd", required=True)
    r = parser(ss, "reward", help="a reward server: POST /get_reward (OpenRLHF protocol), POST /score (JSON)",
                      description="Serve one or more rewards (summed, with --weight) over HTTP. A completion that "
                                  "cannot be scored is never given a made-up value: /score answers null with the "
                                  "reason; /get_reward answers --unscored-reward if you set one, else 503.")
    r.add_argument("--reward", action="append", required=True, metavar="SPEC",
                   help=f"{REWARD_FORMS} (repeatable)")
    r.add_argument("--weight", action="append", type=float, default=None,
                   help="weight of each --reward in the sum, in the same order (default: 1 each)")
    r.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    r.add_argument("--port", type=int, default=8000, help="port (0: any free port; the real one is printed)")
    r.add_argument("--token-env", default=None, metavar="VAR",
                   help="require 'Authorization: Bearer $VAR' on every route except /health")
    r.add_argument("--unscored-reward", type=float, default=None, metavar="VALUE",
                   help="the reward /get_reward answers for a completion that could not be scored (counted in "
                        "extra_logs.rlaif_unscored); without it such a request gets a 503")
    r.add_argument("--concurrency", type=int, default=32, help="judge calls in flight across all requests")
    r.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body accepted (413 beyond)")
    r.add_argument("--base-url", default=None, help="base URL of an OpenAI-compatible judge server (vLLM, ...)")
    r.add_argument("--max-cost", type=float, default=None, help="stop paying for judge calls past this many USD")
    r.add_argument("--timeout", type=float, default=None, help="seconds per judge call attempt")
    r.add_argument("--max-retries", type=int, default=None, help="retries per judge call")
    r.add_argument("--no-cache", action="store_true", help="do not use the request ledger")
    r.add_argument("--ledger", default=None, help="request ledger file (default: the shared one)")
    r.set_defaults(func=cmd_serve_reward)


def cmd_export_rl_data(args) -> int:
    from rlaif.integrations.verl import export_rl_data

    path = export_rl_data(args.prompts, args.output, args.format, split=args.split, data_source=args.data_source,
                          ability=args.ability)
    _stderr(f"wrote {path} ({args.format} RL data)")
    return 0


def add_export_rl_data(sub) -> None:
    """`rlaif export rl-data PROMPTS --format verl -o DIR`, on the existing `rlaif export` (adapter) command.

    argparse cannot give one command both subcommands and its own required options, and `rlaif export
    --adapter ...` must keep working; so the export parser gets an optional first word `rl-data`, `--adapter`
    becomes required only without it (checked in `dispatch`), and `--output` is shared."""
    p = sub.choices["export"]         # cli/train.py's adapter export (--adapter is optional there)
    adapter_export = p.get_default("func")
    p.add_argument("what", nargs="?", choices=["rl-data"], help="rl-data: write prompts as another engine's "
                   "RL training data (see docs/scale.md); omit to export an adapter")
    p.add_argument("prompts", nargs="?", help="rl-data: prompts JSONL (id, prompt, optional reference)")
    p.add_argument("--format", default="verl", choices=["verl"], help="rl-data: the target engine's format")
    p.add_argument("--split", default="train", help="rl-data: the split name (OUTPUT/<split>.parquet)")
    p.add_argument("--data-source", default="rlaif", help="rl-data: the data_source column verl dispatches on")
    p.add_argument("--ability", default="general", help="rl-data: the ability column")

    def dispatch(args) -> int:
        from rlaif.errors import RlaifError

        if args.what == "rl-data":
            if not args.prompts:
                raise RlaifError("rlaif export rl-data: give the prompts file (rlaif export rl-data PROMPTS -o DIR)")
            return cmd_export_rl_data(args)
        if not getattr(args, "adapter", None):
            raise RlaifError("rlaif export: give --adapter DIR (export an adapter) or rl-data PROMPTS (RL data)")
        return adapter_export(args)

    p.set_defaults(func=dispatch)


def add_parsers(sub) -> None:
    """Register this module's commands on the top-level subparsers (after add_training: export is extended)."""
    add_serve(sub)
    add_export_rl_data(sub)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
