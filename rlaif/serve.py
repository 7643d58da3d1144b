"""`rlaif serve reward`: rlaif rewards over HTTP, for RL engines that run the reward in another process.

Why: OpenRLHF (`--remote_rm_url`) and verl's reward loop call rewards over HTTP, often from many rollout
workers at once. The server puts every request through one judge engine (one event loop: one concurrency
limit, request ledger, retries, cost cap, in-flight dedup of identical requests), so 64 workers asking at once
make at most `--concurrency` judge calls at a time and never pay twice for the same one.

Routes:
- `POST /get_reward`: OpenRLHF's protocol exactly (see rlaif.integrations.openrlhf).
- `POST /score`: a plain JSON route for verl or any caller: `{"prompts": [...], "completions": [...],
  "labels": [...]?}` -> `{"rewards": [float | null], "unscored": [reason | null], "by_reward": {name: [...]}}`.
  Unscored values are null here with their reason: the caller decides.
- `GET /health` (no token needed; says only "ok") and `GET /stats` (counts, unscored reasons, judge calls).

Unscored policy (/get_reward only; its callers need a number): the value given by `--unscored-reward`, counted
as `rlaif_unscored` in extra_logs; without that option such a request is answered 503 with the reasons, never a
made-up number. Auth: with `--token-env NAME`, every route but /health needs `Authorization: Bearer <$NAME>`.
The server listens on 127.0.0.1 unless told otherwise.
"""
# no `from __future__ import annotations`: FastAPI reads the route annotations (Request) at runtime

import asyncio
import hmac
import json
import logging
import os
import sys
from collections import Counter

from pydantic import BaseModel, Field, field_validator

from rlaif.errors import RlaifError
from rlaif.integrations.openrlhf import BadRequest, get_reward_answer, parse_get_reward
from rlaif.rewards import PythonScorer, Scorer, resolve

log = logging.getLogger("rlaif.serve")

# 8 MiB: a verl batch of 256 completions of ~8k tokens each fits; a runaway or hostile body does not.
DEFAULT_MAX_BODY_MB = 8.0


class RewardServerConfig(BaseModel):
    """Options of `rlaif serve reward` (also usable from Python: serve_reward(RewardServerConfig(...)))."""

    rewards: list[str] = Field(min_length=1)
    weights: list[float] | None = None
    host: str = "127.0.0.1"          # loopback unless the user opens it up on purpose
    port: int = Field(8000, ge=0, le=65535)
    token_env: str | None = None
    unscored_reward: float | None = None
    concurrency: int = Field(32, ge=1)       # judge calls in flight across all requests
    max_body_mb: float = Field(DEFAULT_MAX_BODY_MB, gt=0)
    base_url: str | None = None               # for openai/ judges on a self-hosted server (vLLM)
    max_cost: float | None = Field(None, ge=0)   # the bounds of rlaif.options.EngineOptions (issue 15.24)
    timeout: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0)
    cache: bool | None = None                 # None: API judges use the ledger, local/fake do not
    ledger: str | None = None

    @field_validator("weights")
    @classmethod
    def _weights(cls, v, info):
        rewards = info.data.get("rewards") or []
        if v is not None and len(v) != len(rewards):
            raise ValueError(f"{len(v)} weights for {len(rewards)} rewards; give one --weight per --reward")
        return v


class RewardService:
    """The rewards behind the server: scores batches, combines rewards, keeps counts. No HTTP here."""

    def __init__(self, cfg: RewardServerConfig, scorers: list[Scorer] | None = None):
        self.cfg = cfg
        if scorers is None:
            opts = {"concurrency": cfg.concurrency, "cache": cfg.cache, "ledger": cfg.ledger,
                    "max_cost": cfg.max_cost, "timeout": cfg.timeout, "max_retries": cfg.max_retries}
            backend_options = {"base_url": cfg.base_url} if cfg.base_url else {}
            scorers = [resolve(s, **opts, backend_options=backend_options)
                       for s in cfg.rewards]
        self.scorers = scorers
        self.weights = cfg.weights or [1.0] * len(scorers)
        self.counts: Counter = Counter()
        self.unscored: Counter = Counter()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.scorers]

    async def score(self, prompts: list, completions: list, labels: list | None = None):
        """-> (combined values, reasons, {name: values}). A completion is unscored if any reward is."""
        labels = labels if labels is not None else [None] * len(completions)

        async def one(s: Scorer):
            cols = {"label": labels} if isinstance(s, PythonScorer) else {"reference": labels}
            return await s.score(prompts, completions, **cols)

        per = await asyncio.gather(*(one(s) for s in self.scorers))
        values: list[float | None] = []
        reasons: list[str | None] = []
        multi = len(self.scorers) > 1
        for i in range(len(completions)):
            bad = [(s.name, r[i][1]) for s, r in zip(self.scorers, per, strict=True) if r[i][0] is None]
            if bad:
                values.append(None)
                reasons.append("; ".join(f"{n}: {why}" if multi else str(why) for n, why in bad))
            else:
                values.append(sum(w * r[i][0] for w, r in zip(self.weights, per, strict=True)))
                reasons.append(None)
        self.counts["requests"] += 1
        self.counts["completions"] += len(completions)
        self.counts["scored"] += sum(v is not None for v in values)
        self.unscored.update(r for r in reasons if r)
        return values, reasons, {s.name: [v for v, _ in r] for s, r in zip(self.scorers, per, strict=True)}

    def stats(self) -> dict:
        out: dict = {"rewards": self.names, **self.counts, "unscored": dict(self.unscored)}
        engines = [getattr(s, "engine", None) for s in self.scorers]
        out["judges"] = {s.name: e.stats.to_dict() for s, e in zip(self.scorers, engines, strict=True) if e}
        return out


def parse_score_body(body) -> tuple[list, list[str], list | None]:
    """Validate a /score body: prompts (strings or chat messages), completions (strings), labels (optional)."""
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object with 'prompts' and 'completions'; got {type(body).__name__}")
    for f in ("prompts", "completions"):
        if f not in body:
            raise BadRequest(f"missing field '{f}'")
        if not isinstance(body[f], list):
            raise BadRequest(f"field '{f}' must be a list, got {type(body[f]).__name__}")
    prompts, completions = body["prompts"], body["completions"]
    if not completions:
        raise BadRequest("field 'completions' is empty")
    if len(prompts) != len(completions):
        raise BadRequest(f"'prompts' has {len(prompts)} items but 'completions' has {len(completions)}; "
                         "they must be the same length")
    for i, p in enumerate(prompts):
        ok = isinstance(p, str) or (isinstance(p, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in p))
        if not ok:
            raise BadRequest(f"field 'prompts' item {i} must be a string or a list of {{role, content}} messages")
    for i, c in enumerate(completions):
        if not isinstance(c, str):
            raise BadRequest(f"field 'completions' item {i} must be a string, got {type(c).__name__}")
    labels = body.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != len(completions):
            raise BadRequest("field 'labels' must be a list with one item per completion")
        labels = [None if x is None else str(x) for x in labels]
    return prompts, completions, labels


class RewardApp:
    """The ASGI app: POST /get_reward and POST /score answered straight from ASGI messages, everything else
    (GET /health, GET /stats, 404, 405, lifespan) by the FastAPI app behind it, which has the same two routes.

    Why the two hot routes skip FastAPI/Starlette: OpenRLHF sends one request per rollout, so the per-request
    CPU of the server is the overhead the caller sees (bench/reward_server.py). Its middleware stack, Request
    object and response classes cost a few % of the server's CPU per one-completion request (py-spy), and none
    of them adds anything here: the body is read, limited and validated by hand (with the messages the protocol
    wants) and the answer is one JSON object. The JSON bytes are the ones Starlette's JSONResponse would send."""

    def __init__(self, api, routes: dict):
        self.api = api
        self.state = api.state            # app.state.service, as on the FastAPI app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        handle = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handle is None:
            await self.api(scope, receive, send)
            return
        status, payload = await handle(scope, receive)
        if status == 0:                   # the client went away before its body arrived: nobody to answer
            return
        body = render_json(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def render_json(payload) -> bytes:
    """JSON bytes exactly as Starlette's JSONResponse renders them."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def build_app(cfg: RewardServerConfig, service: RewardService | None = None):
    """The ASGI app (tests mount it directly; serve_reward runs it under uvicorn)."""
    # why long: the routes are closures over the service and config; they read best together
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError as e:
        raise RlaifError("the reward server needs FastAPI and uvicorn: pip install 'rlaif[serve]' "
                         "(or pip install fastapi uvicorn)") from e

    token = None
    if cfg.token_env:
        token = os.environ.get(cfg.token_env)
        if not token:
            raise RlaifError(f"--token-env {cfg.token_env}: that environment variable is not set or empty")
    service = service or RewardService(cfg)
    limit = int(cfg.max_body_mb * 1024 * 1024)
    api = FastAPI(title="rlaif reward server", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.service = service
    unauthorized = (401, {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"})

    def authorized(got: str) -> bool:
        return token is None or (got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(), token.encode()))

    async def read_json(scope, receive):
        """(body, None), or (None, (status, error)): 401 without the token, 413 past the size limit, 400;
        (None, (0, None)) when the client disconnected."""
        headers = dict(scope["headers"])
        if not authorized(headers.get(b"authorization", b"").decode("latin-1")):
            return None, unauthorized
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            return None, (413, {"error": f"body of {int(declared)} bytes is over the {limit}-byte limit "
                                         "(--max-body-mb)"})
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, (0, None)
            raw += message.get("body", b"")
            if len(raw) > limit:
                return None, (413, {"error": f"body is over the {limit}-byte limit (--max-body-mb)"})
            if not message.get("more_body", False):
                break
        try:
            return json.loads(raw), None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return None, (400, {"error": f"the body is not valid JSON: {e}"})

    def guarded(handle):
        async def route(scope, receive):
            body, err = await read_json(scope, receive)
            if err is not None:
                return err
            try:
                return await handle(body)
            except BadRequest as e:
                return 422, {"error": str(e)}
            except RlaifError as e:           # a reward's own error (a Python reward returning a non-number)
                log.error("reward error: %s", e)
                return 500, {"error": f"reward error: {e}"}
            except Exception as e:
                log.exception("unexpected error while scoring")
                return 500, {"error": f"internal error: {type(e).__name__}: {e}"}
        return route

    async def get_reward(body):
        req = parse_get_reward(body)
        values, reasons, _ = await service.score(req.prompts, req.completions, req.labels)
        if any(v is None for v in values) and cfg.unscored_reward is None:
            why = Counter(r for r in reasons if r)
            return 503, {"error": f"{sum(why.values())} of {len(values)} completions could not be scored "
                                  f"({', '.join(f'{k}: {n}' for k, n in why.items())}); start the server with "
                                  "--unscored-reward VALUE to answer them with a value you choose",
                         "unscored": sum(why.values()), "reasons": dict(why)}
        return 200, get_reward_answer(values, cfg.unscored_reward)

    async def score(body):
        prompts, completions, labels = parse_score_body(body)
        values, reasons, per = await service.score(prompts, completions, labels)
        return 200, {"rewards": values, "unscored": reasons, "by_reward": per}

    @api.get("/health")
    async def health():
        return {"status": "ok"}

    @api.get("/stats")
    async def stats(request: Request):
        if not authorized(request.headers.get("authorization", "")):
            return JSONResponse(unauthorized[1], status_code=401)
        return service.stats()

    routes = {"/get_reward": guarded(get_reward), "/score": guarded(score)}

    def through_starlette(route):         # the same routes on the FastAPI app: complete without the shortcut
        async def endpoint(request: Request):
            status, payload = await route(request.scope, request.receive)
            return JSONResponse(payload, status_code=status or 400)
        return endpoint

    for path, route in routes.items():
        api.add_route(path, through_starlette(route), methods=["POST"])
    return RewardApp(api, routes)


def serve_reward(cfg: RewardServerConfig, *, ready=None) -> None:
    """Run the reward server until interrupted. Prints the address it listens on (the real port for --port 0)."""
    import socket

    try:
        import uvicorn
    except ImportError as e:
        raise RlaifError("the reward server needs uvicorn: pip install 'rlaif[serve]'") from e
    app = build_app(cfg)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as e:
        raise RlaifError(f"cannot listen on {cfg.host}:{cfg.port}: {e}") from e
    sock.listen(2048)          # before the "listening" line: a caller may connect as soon as it reads it
    port = sock.getsockname()[1]
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.token_env:
        print(f"rlaif: warning: listening on {cfg.host} with no --token-env: anyone who reaches this port can "
              "spend your judge budget", file=sys.stderr)
    print(f"rlaif: reward server on http://{cfg.host}:{port} (rewards: {', '.join(app.state.service.names)}; "
          f"POST /get_reward for OpenRLHF, POST /score for anything else)", file=sys.stderr, flush=True)
    # proxy_headers off: no X-Forwarded-* rewriting per request (the server is reached directly, or its proxy logs);
    # no Server/Date headers: nothing reads them, and each costs a little per response
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30,
                                           proxy_headers=False, server_header=False, date_header=False))
    server.run(sockets=[sock])
