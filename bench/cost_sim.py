"""Cost per accepted ticket: HAAO's routing against an all-cloud team, on one seeded trace.

The trace's fixed parameters (bench/cost-trace.md: complexity mix, pass chances per attempt,
Gate 2 acceptance, tokens per call, prices) drive scripted models on 127.0.0.1; HAAO's real
loop (PostgreSQL, Redis, Celery workers, git worktrees, sandboxed checks, merges) runs each
configuration in its own organization, and the figures are sums of HAAO's own usage ledger
(`ModelCall.cost`). A pure-Python model of the same loop on the same draws runs first, as a
cross-check and to try product changes (`--model-only`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRACE_FILE = Path(__file__).resolve().with_name("cost-trace.md")
PER_REQUIREMENT = 8
KINDS = ("local", "cloud", "small")
CACHE_TTL = 300.0
MAX_ATTEMPTS = 40  # far above any budget the runs use; a guard against a loop that never ends

LOCAL_MODEL = "sim-local-coder"
CLOUD_MODEL = "claude-sonnet-4-6"  # the price table's 3 / 15 / 3.75 / 0.30
SMALL_MODEL = "claude-haiku-4-5"  # 1 / 5 / 1.25 / 0.10
KIND_OF_MODEL = {LOCAL_MODEL: "local", CLOUD_MODEL: "cloud", SMALL_MODEL: "small"}


# --- The trace ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallTokens:
    input: float
    per_failed: float
    output: float
    stable: float


@dataclass(frozen=True)
class Rates:
    input: float
    output: float
    cache_write: float
    cache_read: float


@dataclass(frozen=True)
class Trace:
    shares: dict[int, float]
    dod: dict[str, dict[int, float]]  # kind -> complexity -> pass chance per attempt
    gate2: dict[str, dict[int, float]]  # producer (local, cloud) -> complexity -> acceptance
    catch: dict[str, float]  # auditor kind -> chance to catch work Gate 2 would reject
    tokens: dict[str, CallTokens]  # decompose, code_local, code_cloud, audit
    prices: dict[str, Rates]  # local, cloud, small
    sd: float
    floor: float


def _tables(text: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _number(cell: str) -> float:
    found = re.search(r"\d[\d,]*(?:\.\d+)?", cell)
    return float(found.group(0).replace(",", "")) if found else 0.0


def _prose(text: str, pattern: str, what: str, path: Path) -> float:
    found = re.search(pattern, text, re.S)
    if found is None:
        raise SystemExit(f"{path}: cannot find {what} (expected text matching {pattern!r}).")
    return float(found.group(1))


def trace_load(path: Path = TRACE_FILE) -> Trace:
    """The trace's tables (and the audit catch chances of its text), or a clear exit."""
    if not path.is_file():
        raise SystemExit(f"The trace {path} is missing; copy it from the shared "
                         "bench/cost-trace.md.")
    text = path.read_text()
    by_header = {table[0][0].lower(): table for table in _tables(text)}
    for header, what in (("complexity", "the tickets table (| complexity | share | ...)"),
                         ("call", "the tokens table (| call | input tokens | ...)"),
                         ("model", "the prices table (| model | input | output | ...)")):
        if header not in by_header or len(by_header[header]) < 2:
            raise SystemExit(f"{path}: {what} is missing.")
    shares: dict[int, float] = {}
    dod: dict[str, dict[int, float]] = {"local": {}, "cloud": {}}
    gate2: dict[str, dict[int, float]] = {"local": {}, "cloud": {}}
    for row in by_header["complexity"][1:]:
        if len(row) < 6:
            raise SystemExit(f"{path}: tickets table row {row} has fewer than 6 cells.")
        level = int(_number(row[0]))
        shares[level] = _number(row[1])
        dod["local"][level], dod["cloud"][level] = _number(row[2]), _number(row[3])
        gate2["local"][level], gate2["cloud"][level] = _number(row[4]), _number(row[5])
    if abs(sum(shares.values()) - 1) > 1e-6:
        raise SystemExit(f"{path}: the complexity shares add up to {sum(shares.values())}, "
                         "not 1.")
    minus = _prose(text, r"cloud pass chance minus (\d+(?:\.\d+)?)",
                   "the small model's pass chance", path)
    dod["small"] = {level: max(0.0, chance - minus) for level, chance in dod["cloud"].items()}
    catch = {
        "cloud": _prose(text, r"cloud audit, when it\s+runs, catches a work that Gate 2 would "
                              r"reject with probability (\d+(?:\.\d+)?)", "the cloud audit's catch",
                        path),
        "small": _prose(text, r"catches a bad work in audit with probability (\d+(?:\.\d+)?)",
                        "the small model's catch", path),
        "local": _prose(text, r"local model may also be\s+used as an auditor: it catches with "
                              r"probability (\d+(?:\.\d+)?)", "the local auditor's catch", path)}
    tokens: dict[str, CallTokens] = {}
    names = {"decomposition": "decompose", "coder attempt, local": "code_local",
             "coder attempt, cloud": "code_cloud", "audit": "audit"}
    for row in by_header["call"][1:]:
        name = next((key for prefix, key in names.items() if row[0].lower().startswith(prefix)),
                    None)
        if name is None or len(row) < 4:
            continue
        parts = row[1].split("+")
        tokens[name] = CallTokens(input=_number(parts[0]),
                                  per_failed=_number(parts[1]) if len(parts) > 1 else 0.0,
                                  output=_number(row[2]), stable=_number(row[3]))
    missing = sorted(set(names.values()) - set(tokens))
    if missing:
        raise SystemExit(f"{path}: the tokens table has no row for {', '.join(missing)}.")
    prices: dict[str, Rates] = {}
    for row in by_header["model"][1:]:
        label = row[0].lower()
        kind = "small" if label.startswith("cloud small") else "cloud" if label.startswith(
            "cloud") else "local" if label.startswith("local") else ""
        if kind and len(row) >= 5:
            rates = [_number(cell) for cell in row[1:5]]
            prices[kind] = Rates(*rates)
    if set(prices) != set(KINDS):
        raise SystemExit(f"{path}: the prices table needs rows for cloud, cloud small and "
                         f"local coder (found {', '.join(sorted(prices)) or 'none'}).")
    sd = _prose(text, r"normal with (\d+(?:\.\d+)?)% standard deviation", "the token spread", path)
    floor = _prose(text, r"standard deviation, floor (\d+(?:\.\d+)?)%", "the token floor", path)
    return Trace(shares=shares, dod=dod, gate2=gate2, catch=catch, tokens=tokens,
                 prices=prices, sd=sd / 100, floor=floor / 100)


# --- Seeded draws (common random numbers: keyed by ticket, attempt number and kind) ---------------

class Draws:
    """Every chance event of the trace, fixed by the seed before any run: a draw depends only
    on its key, so each configuration sees the same tickets and the same luck per attempt."""

    def __init__(self, trace: Trace, seed: int) -> None:
        self.trace = trace
        self.seed = seed

    def uniform(self, *key: Any) -> float:
        digest = hashlib.blake2b(repr((self.seed, *key)).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2 ** 64

    @cache  # noqa: B019 - the instance lives for the whole run
    def complexity(self, ticket: int) -> int:
        u, total = self.uniform("complexity", ticket), 0.0
        for level, share in sorted(self.trace.shares.items()):
            total += share
            if u < total:
                return level
        return max(self.trace.shares)

    def passes(self, ticket: int, attempt: int, kind: str) -> bool:
        """Whether the `kind` model's attempt number `attempt` passes the DoD."""
        return self.uniform("dod", ticket, attempt, kind) < \
            self.trace.dod[kind][self.complexity(ticket)]

    def accepted(self, ticket: int, attempt: int, producer: str) -> bool:
        """Whether Gate 2 accepts that attempt's work (by who produced it: local or cloud)."""
        column = "local" if producer == "local" else "cloud"
        return self.uniform("gate2", ticket, attempt, column) < \
            self.trace.gate2[column][self.complexity(ticket)]

    def catches(self, ticket: int, attempt: int, auditor: str) -> bool:
        """Whether an audit by `auditor` catches that attempt's work if Gate 2 would reject it."""
        return self.uniform("catch", ticket, attempt, auditor) < self.trace.catch[auditor]

    def tokens(self, mean: float, *key: Any) -> int:
        """A normal draw around `mean` (the trace's spread), never under its floor."""
        rng = random.Random(int(self.uniform("tokens", *key) * 2 ** 53))
        value = mean * (1 + self.trace.sd * rng.gauss(0.0, 1.0))
        return max(round(mean * self.trace.floor), round(value))

    def call(self, call: str, *key: Any, failed: int = 0) -> tuple[int, int, float]:
        """(input, output, stable share) of one call, e.g. call("audit", ticket, attempt, kind)."""
        spec = self.trace.tokens[call]
        return (self.tokens(spec.input + spec.per_failed * failed, call, "in", *key),
                self.tokens(spec.output, call, "out", *key), spec.stable)


# --- The expected-value model: the loop's decisions in plain Python ----------------------------

@dataclass(frozen=True)
class Config:
    """One configuration of the loop (the product's policy and endpoints, or a what-if)."""

    name: str
    coder: str = "local"  # the kind of the coder endpoint
    retry_budget: int = 3
    escalation: bool = True
    max_cloud_attempts: int = 1
    auditor: str | None = "cloud"  # None: no audit
    max_audit_failures: int = 3
    coder_cached: bool = False  # the coder's prompt marks a cache breakpoint (it does not)
    # What-ifs the product does not offer (model only):
    cloud_work_auditor: str | None = "same"  # "same" as `auditor`, another kind, or None
    second_auditor_from: int = 0  # complexity from which a second (cloud) audit runs
    escalate_after_failed_audit: bool = False
    cloud_from: int = 0  # complexity from which the Tech Lead writes the first attempt
    shared_audit_cache: bool = False  # audit breakpoint on a prefix all tickets share
    audit_chain: tuple[str, ...] = ()  # auditors of local work, one after the other
    cloud_audit_chain: tuple[str, ...] = ()  # auditors of the Tech Lead's work (with a chain)
    # Gate 2 reviews per ticket: 1 = a rejection is final; 2 = the product owner sends
    # rejected work back once with feedback (the product's flow: a new cycle with fresh
    # budgets), as the trace reads; and so on.
    reviews: int = 2
    loop: bool = True  # also replayed through the real loop
    # In the loop, replay only the tickets whose path can differ from the main HAAO run's
    # (see `budget_matters`); the others' ledger rows are the main run's.
    shares_main: bool = False

    def label(self) -> str:
        return self.name


def haao(name: str = "haao", **changes: Any) -> Config:
    """The product's defaults (policies.rules) with a local coder and a cloud Tech Lead."""
    from policies.rules import BY_NAME

    base = Config(name=name, retry_budget=BY_NAME["retry_budget"].default,
                  escalation=BY_NAME["escalation_allowed"].default,
                  max_cloud_attempts=BY_NAME["max_cloud_attempts"].default,
                  auditor="cloud" if BY_NAME["audit_mode"].default == "all" else None,
                  max_audit_failures=BY_NAME["max_audit_failures"].default)
    if "audit_work" in BY_NAME:  # whose passing work is audited: "local" or "all"
        base = replace(base, cloud_work_auditor=None if BY_NAME["audit_work"].default ==
                       "local" else "same")
    return replace(base, **changes)


ALL_CLOUD = Config(name="all-cloud", coder="cloud", retry_budget=3, escalation=False,
                   auditor="cloud")


def price_of(trace: Trace, kind: str, input_tokens: int, output: int, write: int = 0,
             read: int = 0) -> float:
    rates = trace.prices[kind]
    return (rates.input * input_tokens + rates.output * output + rates.cache_write * write
            + rates.cache_read * read) / 1e6


@dataclass
class Outcome:
    tickets: int = 0
    accepted: int = 0
    rejected: int = 0
    blocked: int = 0
    sent_back: int = 0  # Gate 2 rejections that sent a ticket back for rework
    cost: float = 0.0
    by_role: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: Counter[str] = field(default_factory=Counter)
    why_blocked: Counter[str] = field(default_factory=Counter)  # the loop's block reasons

    @property
    def per_accepted(self) -> float:
        return self.cost / self.accepted if self.accepted else math.inf

    @property
    def acceptance(self) -> float:
        return 100 * self.accepted / self.tickets if self.tickets else 0.0


def model_run(config: Config, draws: Draws, tickets: int) -> Outcome:
    """What the loop should do with `config` on these draws: the same rules as
    tickets.services.engine (retries, escalation, audits, blocks) and the same cache marks as
    the Tech Lead's prompts (decomposition: instructions + repository map, shared by a
    project's requirements; audit and solve: instructions + ticket, per ticket)."""
    trace, out = draws.trace, Outcome(tickets=tickets)

    def pay(role: str, kind: str, cost: float) -> None:
        out.cost += cost
        out.by_role[role] += cost
        out.calls[role] += 1

    for requirement in range((tickets + PER_REQUIREMENT - 1) // PER_REQUIREMENT):
        inp, output, share = draws.call("decompose", requirement)
        stable = round(share * inp)
        write, read = (stable, 0) if requirement == 0 else (0, stable)
        pay("decompose", "cloud", price_of(trace, "cloud", inp - stable, output, write, read))
    shared: set[tuple[str, str]] = set()
    for ticket in range(1, tickets + 1):
        _model_ticket(config, draws, ticket, out, pay, shared)
    return out


def _model_ticket(config: Config, draws: Draws, ticket: int, out: Outcome,
                  pay: Callable[[str, str, float], None], shared: set[tuple[str, str]]
                  ) -> None:
    trace = draws.trace
    retries_left, cloud_attempts, audit_failures = config.retry_budget, 0, 0
    reviews = 0  # Gate 2 rejections so far
    prefixes: set[tuple[str, str]] = set()  # cached (call, model kind) prefixes of this ticket
    audit_prefixes = shared if config.shared_audit_cache else prefixes
    executor = "coder"
    if config.cloud_from and draws.complexity(ticket) >= config.cloud_from:
        executor = "cloud"
    for attempt in range(1, MAX_ATTEMPTS):
        if executor == "cloud":
            cloud_attempts += 1
        kind = config.coder if executor == "coder" else "cloud"
        call = "code_local" if kind == "local" else "code_cloud"
        inp, output, share = draws.call(call, ticket, attempt, kind, failed=attempt - 1)
        cached = executor == "cloud" or config.coder_cached
        stable = round(share * inp) if cached and kind != "local" else 0
        seen = ("solve", kind) in prefixes
        prefixes.add(("solve", kind))
        role = "solve" if executor == "cloud" else "code"
        pay(role, kind, price_of(trace, kind, inp - stable, output, 0 if seen else stable,
                                 stable if seen else 0))
        failed = not draws.passes(ticket, attempt, kind)
        audit_failed = False
        if not failed:
            auditors = []
            first = config.auditor if kind == "local" or config.cloud_work_auditor == "same" \
                else config.cloud_work_auditor
            if config.audit_chain:
                auditors = list(config.audit_chain if kind == "local"
                                else config.cloud_audit_chain)
            elif first:
                auditors.append(first)
            if config.second_auditor_from and \
                    draws.complexity(ticket) >= config.second_auditor_from and \
                    "cloud" not in auditors:
                auditors.append("cloud")
            bad = not draws.accepted(ticket, attempt, kind)
            for auditor in auditors:
                a_in, a_out, a_share = draws.call("audit", ticket, attempt, auditor)
                a_stable = round(a_share * a_in)
                a_seen = ("audit", auditor) in audit_prefixes
                audit_prefixes.add(("audit", auditor))
                pay("audit", auditor, price_of(trace, auditor, a_in - a_stable, a_out,
                                               0 if a_seen else a_stable,
                                               a_stable if a_seen else 0))
                if bad and draws.catches(ticket, attempt, auditor):
                    audit_failed = True
                    break
            if not audit_failed:
                if not bad:
                    out.accepted += 1
                    return
                reviews += 1
                if reviews >= config.reviews:
                    out.rejected += 1
                    return
                # Rejected with feedback: a new cycle with fresh budgets (tickets_requeue).
                out.sent_back += 1
                retries_left, cloud_attempts, audit_failures = config.retry_budget, 0, 0
                executor = "cloud" if config.cloud_from and \
                    draws.complexity(ticket) >= config.cloud_from else "coder"
                continue
            audit_failures += 1
            if audit_failures >= config.max_audit_failures:
                out.blocked += 1
                return
        cloud = executor == "cloud"
        if config.escalate_after_failed_audit and audit_failed and not cloud:
            retries_left = 0
        if not cloud and retries_left > 0:
            retries_left -= 1
            executor = "coder"
        elif config.escalation and cloud_attempts < config.max_cloud_attempts:
            executor = "cloud"
        else:
            out.blocked += 1
            return
    out.blocked += 1


def budget_matters(draws: Draws, ticket: int, config: Config) -> bool:
    """Whether the retry budget can change what happens to `ticket`: not when the local
    coder's first attempt passes its checks and its audit (if any) lets it through, and Gate 2
    accepts it or has no second review — then Gate 2 decides at once, whatever the budget, on
    the same draws."""
    if not draws.passes(ticket, 1, config.coder):
        return True
    if config.reviews > 1 and not draws.accepted(ticket, 1, config.coder):
        return True  # sent back: the new cycle spends the budget
    auditor = config.auditor
    return bool(auditor) and not draws.accepted(ticket, 1, config.coder) and \
        draws.catches(ticket, 1, str(auditor))


# --- Scripted models that follow the trace ------------------------------------------------------

_TICKET = re.compile(r"sim/(\d+)\.txt")
_WORK = re.compile(r"(pass|fail) ticket=(\d+) attempt=(\d+) by=(\w+)")
_REQUIREMENT = re.compile(r"Cost simulation requirement (\d+)\b")


def work_text(ticket: int, attempt: int, kind: str, passing: bool) -> str:
    """The file an attempt writes: its first word decides the DoD check."""
    return f"{'pass' if passing else 'fail'} ticket={ticket} attempt={attempt} by={kind}\n"


def ticket_spec(ticket: int, complexity: int) -> dict[str, Any]:
    path = f"sim/{ticket}.txt"
    check = (f"import sys; sys.exit(0 if open({path!r}).read().startswith('pass ') else 1)")
    return {"schema_version": "1", "title": f"Simulated ticket {ticket}",
            "objective": f"Write {path} so that its first word is 'pass'.",
            "code_context": [{"path": "README.md", "line_start": 1, "line_end": 1}],
            "allowed_paths": [path], "constraints": [],
            "definition_of_done": [{"name": "content", "command": ["python3", "-c", check],
                                    "expected_exit_code": 0, "timeout_seconds": 60}],
            "dependencies": [], "complexity": complexity}


class TraceModels:
    """The Tech Lead / auditor (Anthropic protocol) and the coders (OpenAI protocol), answering
    and reporting usage as the trace says. Cloud usage is cache-aware: the trace's stable share
    is a cache write the first time the request's marked prefix (up to its last cache_control
    breakpoint) is seen by that API key and model, a read within five minutes after."""

    def __init__(self, draws: Draws, tickets: int) -> None:
        self.draws = draws
        self.tickets = tickets
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self.unknown: Counter[str] = Counter()
        self.cloud: Any = None
        self.coders: Any = None

    def start(self) -> TraceModels:
        from sample_models import AnthropicServer, OpenAIServer

        self.cloud = AnthropicServer(answer=self.anthropic).start()
        self.coders = OpenAIServer(flavor="lmstudio", answer=self.coder).start()
        return self

    def stop(self) -> None:
        for server in (self.cloud, self.coders):
            if server is not None:
                server.stop()

    # Anthropic: decompose, audit, solve ---------------------------------------------------------

    def anthropic(self, request: Any) -> Any:
        from sample_models.anthropic import text_reply, tool_use_reply

        body = request.body
        kind = KIND_OF_MODEL.get(str(body.get("model")), "cloud")
        tools = {tool.get("name") for tool in body.get("tools") or []}
        everything = json.dumps(body)
        if "propose_tickets" in tools:
            found = _REQUIREMENT.search(everything)
            number = int(found.group(1)) if found else 0
            first = number * PER_REQUIREMENT + 1
            last = min(self.tickets, first + PER_REQUIREMENT - 1)
            proposal = {"tickets": [ticket_spec(n, self.draws.complexity(n))
                                    for n in range(first, last + 1)]}
            inp, out, share = self.draws.call("decompose", number)
            return tool_use_reply("propose_tickets", proposal,
                                  usage=self._usage(request, inp, out, share))
        if "submit_audit" in tools:
            work = _WORK.search(everything)
            if work is None:
                self.unknown["audit"] += 1
                return tool_use_reply("submit_audit", {"passed": True, "findings": [],
                                                       "summary": "No simulated work found."})
            ticket, attempt, producer = int(work.group(2)), int(work.group(3)), work.group(4)
            caught = not self.draws.accepted(ticket, attempt, producer) and \
                self.draws.catches(ticket, attempt, kind)
            verdict = ({"passed": False, "summary": "The work would not be accepted.",
                        "findings": [{"severity": "major", "path": f"sim/{ticket}.txt",
                                      "message": "Not what the product owner asked for."}]}
                       if caught else {"passed": True, "findings": [],
                                       "summary": "The work does what the ticket asks."})
            inp, out, share = self.draws.call("audit", ticket, attempt, kind)
            return tool_use_reply("submit_audit", verdict,
                                  usage=self._usage(request, inp, out, share))
        # Solve: the ticket is in the cached system prompt, earlier attempts in the message.
        ticket = self._ticket_of(everything)
        numbers = [int(n) for n in re.findall(r"## Attempt (\d+) ", everything)]
        attempt = max(numbers, default=0) + 1
        passing = self.draws.passes(ticket, attempt, kind)
        inp, out, share = self.draws.call("code_cloud", ticket, attempt, kind,
                                          failed=attempt - 1)
        text = f"<<<<<<< FILE sim/{ticket}.txt\n{work_text(ticket, attempt, kind, passing)}" \
               ">>>>>>> END\n"
        return text_reply(text, usage=self._usage(request, inp, out, share))

    def _ticket_of(self, text: str) -> int:
        found = _TICKET.search(text)
        if found is None:
            self.unknown["ticket"] += 1
            return 0
        return int(found.group(1))

    def _usage(self, request: Any, inp: int, out: int, share: float) -> dict[str, int]:
        from sample_models.anthropic import prompt_blocks, usage

        body = request.body
        blocks = prompt_blocks(body)
        marks = [i for i, (_, control) in enumerate(blocks)
                 if isinstance(control, Mapping) and control.get("type") == "ephemeral"]
        if not marks:
            return usage(inp, out)
        stable = round(share * inp)
        sizes = [len(text) for text, _ in blocks]
        digest = hashlib.sha256(f"{request.header('x-api-key') or request.header('authorization')}"
                                f"|{body.get('model')}".encode())
        keys: dict[int, str] = {}
        for index, (text, _) in enumerate(blocks[:marks[-1] + 1]):
            digest.update(len(text).to_bytes(8, "big") + text.encode())
            if index in marks:
                keys[index] = digest.hexdigest()
        now = time.monotonic()
        whole = sum(sizes[:marks[-1] + 1]) or 1
        with self._lock:
            hits = [i for i in marks if self._expiry.get(keys[i], 0.0) > now]
            for index in marks:
                self._expiry[keys[index]] = now + CACHE_TTL
        # A hit on an earlier breakpoint reads its part of the stable share, the rest is written.
        read = 0 if not hits else round(stable * sum(sizes[:hits[-1] + 1]) / whole)
        return usage(inp - stable, out, cache_creation_input_tokens=stable - read,
                     cache_read_input_tokens=read)

    # OpenAI-compatible coders -------------------------------------------------------------------

    def coder(self, request: Any) -> Any:
        from sample_models.base import last_user_text
        from sample_models.openai import chat_reply, usage

        body = request.body
        kind = KIND_OF_MODEL.get(str(body.get("model")), "local")
        prompt = last_user_text(body)
        ticket = self._ticket_of(prompt)
        previous = re.search(r"What went wrong in attempt (\d+)", prompt)
        attempt = int(previous.group(1)) + 1 if previous else 1
        passing = self.draws.passes(ticket, attempt, kind)
        call = "code_local" if kind == "local" else "code_cloud"
        inp, out, _ = self.draws.call(call, ticket, attempt, kind, failed=attempt - 1)
        text = f"<<<<<<< FILE sim/{ticket}.txt\n{work_text(ticket, attempt, kind, passing)}" \
               ">>>>>>> END\n"
        return chat_reply(text, usage=usage(inp, out))


# --- The real loop --------------------------------------------------------------------------------

@contextlib.contextmanager
def sim_database(url: str) -> Iterator[str]:
    """A fresh database `haao_costsim_<pid>` on the server of `url`, dropped afterwards."""
    from bench.loop import admin_connection

    name = f"haao_costsim_{os.getpid()}"
    with admin_connection(url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        with admin_connection(url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_org(config: Config, index: int, workdir: Path,
             models: TraceModels) -> tuple[Any, Any, Any]:
    """An organization for one configuration: product owner, a project on the sample
    repository, its endpoints (priced as the trace says), its policy."""
    from accounts import services as accounts
    from accounts.models import User
    from agents.services import endpoint_create
    from agents.workspaces.samples import SAMPLE_PROJECT, git_checkout
    from haao.audit import Actor
    from policies.services import policy_update
    from tickets.models import Project
    from tickets.services import project_create, project_grant_set
    from tickets.services.projects import project_repository_set

    slug = f"sim{index}"
    admin = User.objects.create_user(f"admin@{slug}.local", secrets.token_urlsafe(), name="Admin")
    owner = User.objects.create_user(f"po@{slug}.local", secrets.token_urlsafe(), name="PO")
    organization = accounts.organization_create(name=f"Sim {config.name}", slug=slug,
                                                creator=admin)
    accounts.membership_add(organization=organization, user=owner, role="product_owner",
                            actor=admin, via="bench")
    project = project_create(organization=organization, key=f"S{index}", name=config.name,
                             actor=admin)
    repository = git_checkout(SAMPLE_PROJECT, workdir / f"origin{index}")
    project_repository_set(project=project, repository=str(repository), actor=admin)
    project_grant_set(organization=organization, project=project, user=owner,
                      grants={"approve"}, actor=admin)
    changes = {"wip_limit": 100, "retry_budget": config.retry_budget,
               "escalation_allowed": config.escalation,
               "max_cloud_attempts": config.max_cloud_attempts,
               "max_audit_failures": config.max_audit_failures,
               "audit_mode": "all" if config.auditor else "off",
               # The simulated Definition of Done is one line of `python3 -c` (the sample
               # repository has no file that checks sim/<n>.txt): allowed for this bench only.
               "inline_code": True}
    from policies.rules import BY_NAME

    if "audit_work" in BY_NAME:
        changes["audit_work"] = "local" if config.cloud_work_auditor is None else "all"
    policy_update(organization=organization, project=project, actor=Actor.of(admin),
                  changes=changes)
    api_key = f"sk-ant-sim-{index}"  # the provider's cache is per organization (key)
    coder_model = {"local": LOCAL_MODEL, "cloud": CLOUD_MODEL, "small": SMALL_MODEL}[config.coder]
    rates = models.draws.trace.prices[config.coder]
    endpoint_create(organization=organization, actor=admin, values={
        "name": "Coder", "kind": "openai_compatible", "flavor": "other",
        "base_url": models.coders.url, "model": coder_model, "role": "coder",
        "max_concurrency": 64, "self_hosted": config.coder == "local",
        "price_input": str(rates.input), "price_output": str(rates.output)})
    endpoint_create(organization=organization, actor=admin, values={
        "name": "Tech Lead", "kind": "anthropic", "base_url": models.cloud.url,
        "model": CLOUD_MODEL, "role": "tech_lead", "max_concurrency": 64}, api_key=api_key)
    if config.auditor and config.auditor != "cloud":
        endpoint_create(organization=organization, actor=admin, values={
            "name": "Auditor", "kind": "anthropic", "base_url": models.cloud.url,
            "model": SMALL_MODEL, "role": "auditor", "max_concurrency": 64}, api_key=api_key)
    return Project.objects.get(pk=project.pk), owner, organization


@dataclass
class Run:
    """One configuration's organization in the loop, and when its last ticket settled."""

    config: Config
    project: Any
    owner: Any
    organization: Any
    started: float
    finished: float = 0.0
    sent_back: Counter[Any] = field(default_factory=Counter)  # times, by ticket


def loop_start(config: Config, index: int, *, tickets: int, workdir: Path,
               models: TraceModels) -> Run:
    """Seed the configuration's organization and submit its requirements."""
    from tickets.services import requirement_create

    started = time.perf_counter()
    project, owner, organization = seed_org(config, index, workdir, models)
    for number in range((tickets + PER_REQUIREMENT - 1) // PER_REQUIREMENT):
        requirement_create(project=project, actor=owner, title=f"Simulated work {number + 1}",
                           text=f"Cost simulation requirement {number}: "
                                f"{PER_REQUIREMENT} small independent changes.")
    return Run(config=config, project=project, owner=owner, organization=organization,
               started=started)


def as_owner(owner: Any, action: Callable[..., Any], **kwargs: Any) -> None:
    """The product owner's decision; a deadlock with a worker rolls it back: decide again."""
    from django.db import OperationalError

    for _ in range(20):
        try:
            action(actor=owner, **kwargs)
            return
        except OperationalError as error:
            if "deadlock" not in str(error):
                raise
    raise SystemExit(f"{action.__name__} deadlocked 20 times in a row")


REJECTION = "Not what was asked for (simulated rejection)."


def send_back(*, ticket: Any, actor: Any) -> None:
    """Gate 2 as the product does it: rejected with feedback, the ticket starts a new cycle."""
    from tickets.services.tickets import ticket_reject

    ticket_reject(ticket=ticket, actor=actor, feedback=REJECTION)


def reject_and_cancel(*, ticket: Any, actor: Any) -> None:
    """The last Gate 2 review a configuration allows: a rejection ends the ticket."""
    from django.db import transaction

    from tickets.services.tickets import ticket_cancel, ticket_reject

    with transaction.atomic():
        rejected = ticket_reject(ticket=ticket, actor=actor, feedback=REJECTION)
        ticket_cancel(ticket=rejected, actor=actor, reason="Rejected at Gate 2.")


def loop_drive(runs: list[Run], *, models: TraceModels, workers: Any, timeout: float) -> None:
    """Approve every proposal, then play the product owner at Gate 2 until every ticket has
    settled (accepted and merged, cancelled after its last rejection, or blocked). A rejected
    ticket goes back with feedback while its configuration allows more reviews."""
    from haao.errors import Conflict
    from tickets.models import (
        Attempt,
        AttemptOutcome,
        Requirement,
        RequirementStatus,
        Ticket,
        TicketStatus,
    )
    from tickets.services import requirement_approve, ticket_accept
    from tickets.services.tickets import ticket_cancel

    deadline = time.monotonic() + timeout
    approved: set[Any] = set()
    settled = (TicketStatus.CANCELLED, TicketStatus.BLOCKED)
    while any(not run.finished for run in runs):
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out: {[r.config.name for r in runs if not r.finished]} "
                             f"unfinished.\n{workers.logs()}")
        for run in runs:
            if run.finished:
                continue
            project = run.project
            failed = Requirement.objects.filter(project=project,
                                                status=RequirementStatus.FAILED).first()
            if failed is not None:
                raise SystemExit(f"Decomposition of {failed.key} failed: {failed.failure}")
            for requirement in Requirement.objects.filter(
                    project=project, status=RequirementStatus.PROPOSED).exclude(
                    pk__in=approved).order_by("number"):
                if run.config.shares_main:
                    for ticket in Ticket.objects.filter(requirement=requirement,
                                                        status=TicketStatus.PROPOSED):
                        found = _TICKET.search(json.dumps(ticket.spec))
                        if found and not budget_matters(models.draws, int(found.group(1)),
                                                        run.config):
                            as_owner(run.owner, ticket_cancel, ticket=ticket,
                                     reason="Decided as in the main run (Gate 1 drop).")
                with contextlib.suppress(Conflict):  # every ticket of it was dropped
                    as_owner(run.owner, requirement_approve, requirement=requirement)
                approved.add(requirement.pk)
            waiting = Ticket.objects.filter(project=project,
                                            status=TicketStatus.AWAITING_ACCEPTANCE)
            for ticket in waiting.select_related("project__organization"):
                attempt = (Attempt.objects.filter(ticket=ticket,
                                                  outcome=AttemptOutcome.PASSED)
                           .order_by("-number").first())
                found = _TICKET.search(json.dumps(ticket.spec))
                if attempt is None or found is None:
                    continue
                producer = KIND_OF_MODEL.get(attempt.model, "cloud")
                if models.draws.accepted(int(found.group(1)), attempt.number, producer):
                    as_owner(run.owner, ticket_accept, ticket=ticket)
                elif run.sent_back[ticket.pk] + 1 < run.config.reviews:
                    as_owner(run.owner, send_back, ticket=ticket)
                    run.sent_back[ticket.pk] += 1
                else:
                    as_owner(run.owner, reject_and_cancel, ticket=ticket)
            pending = Requirement.objects.filter(
                project=project, status=RequirementStatus.DECOMPOSING).exists()
            unsettled = Ticket.objects.filter(project=project).exclude(
                status__in=settled).exclude(status=TicketStatus.ACCEPTED,
                                            merged_commit__gt="").exists()
            if not pending and not unsettled and Ticket.objects.filter(project=project).exists():
                run.finished = time.perf_counter()
        time.sleep(0.2)


def loop_ledger(run: Run) -> tuple[dict[int, str], dict[int, dict[str, float]],
                                     dict[str, float]]:
    """From the run's organization: each simulated ticket's status, its ledger cost by role,
    and the cost by role of the rows of no ticket (the decompositions)."""
    from django.db.models import Sum

    from agents.models import ModelCall
    from tickets.models import Ticket

    number_of: dict[Any, int] = {}
    statuses: dict[int, str] = {}
    for pk, spec, status in Ticket.objects.filter(project=run.project).values_list(
            "pk", "spec", "status"):
        found = _TICKET.search(json.dumps(spec))
        if found:
            number_of[pk] = int(found.group(1))
            statuses[int(found.group(1))] = status
    costs: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    loose: dict[str, float] = defaultdict(float)
    for entry in (ModelCall.objects.filter(organization=run.organization)
                  .values("ticket_id", "role").annotate(cost=Sum("cost"))):
        cost = float(entry["cost"] or 0)
        if entry["ticket_id"] in number_of:
            costs[number_of[entry["ticket_id"]]][entry["role"]] += cost
        else:
            loose[entry["role"]] += cost
    return statuses, costs, loose


def loop_outcome(run: Run, main: Run | None, draws: Draws) -> Outcome:
    """What the configuration's tickets became and what HAAO's ledger says they cost; a run
    that shares the main run's tickets takes those tickets' status and rows from it."""
    from tickets.models import Ticket, TicketStatus

    statuses, costs, loose = loop_ledger(run)
    if run.config.shares_main and main is not None:
        main_statuses, main_costs, _ = loop_ledger(main)
        for number, status in main_statuses.items():
            if not budget_matters(draws, number, run.config):
                statuses[number] = status
                costs[number] = main_costs.get(number, {})
    counts = Counter(statuses.values())
    out = Outcome(tickets=len(statuses), accepted=counts[TicketStatus.ACCEPTED],
                  rejected=counts[TicketStatus.CANCELLED], blocked=counts[TicketStatus.BLOCKED],
                  sent_back=sum(run.sent_back.values()))
    out.why_blocked.update(Ticket.objects.filter(project=run.project,
                                                 status=TicketStatus.BLOCKED)
                           .values_list("block_reason", flat=True))
    for role, cost in loose.items():
        out.by_role[role] += cost
    for number in statuses:
        for role, cost in costs.get(number, {}).items():
            out.by_role[role] += cost
    out.cost = sum(out.by_role.values())
    return out


def loop_apart_from_model(looped: Mapping[str, tuple[Outcome, float]],
                          modelled: Mapping[str, Outcome]) -> list[str]:
    """The configurations whose tickets the loop settled otherwise than the model (accepted,
    rejected, blocked, sent back: each within 2 tickets or 2%), with why the loop blocked
    them. The two run on the same draws, so a difference is a bench or product fault, not
    chance: a policy that refuses the simulated checks, say, which would otherwise read as a
    cheap configuration that accepts nothing."""
    apart = []
    for name, (out, _) in looped.items():
        model = modelled[name]
        slack = max(2, round(0.02 * out.tickets))
        counts = [(out.accepted, model.accepted), (out.rejected, model.rejected),
                  (out.blocked, model.blocked), (out.sent_back, model.sent_back)]
        if all(abs(loop - expected) <= slack for loop, expected in counts):
            continue
        apart.append(f"  {name}: accepted/rejected/blocked/sent back {out.accepted}/"
                     f"{out.rejected}/{out.blocked}/{out.sent_back} in the loop, "
                     f"{model.accepted}/{model.rejected}/{model.blocked}/{model.sent_back} in "
                     "the model"
                     + "".join(f"\n    {n} blocked: {reason[:300]}"
                               for reason, n in out.why_blocked.most_common(2)))
    return apart


def loop_all(configs: list[Config], *, tickets: int, draws: Draws, timeout: float,
             workers_count: int, concurrency: int) -> dict[str, tuple[Outcome, float]]:
    server_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not server_url.startswith(("postgres://", "postgresql://")) or not redis_url:
        raise SystemExit("Set DATABASE_URL (a PostgreSQL server; the user needs CREATEDB) and "
                         "REDIS_URL (an empty Redis database, e.g. redis://127.0.0.1:6379/11), "
                         "or pass --model-only.")
    from bench.loop import Workers, django_migrated, empty_redis

    workdir = Path(tempfile.mkdtemp(prefix="haao-bench-costsim-"))
    results: dict[str, tuple[Outcome, float]] = {}
    try:
        with empty_redis(redis_url), sim_database(server_url) as database_url:
            django_migrated(workdir, database_url)
            from agents.sandbox import sandbox_available

            if not sandbox_available():
                raise SystemExit("bubblewrap cannot start a sandbox here; the checks need it")
            models = TraceModels(draws, tickets).start()
            workers = Workers(workdir=workdir, env=dict(os.environ))
            try:
                for index in range(1, workers_count + 1):
                    workers.start(index, concurrency=concurrency)
                workers.start_beat()
                # The runs that share the main run's tickets go after it.
                indexed = list(enumerate(configs, start=1))
                groups = [[(i, c) for i, c in indexed if not c.shares_main],
                          [(i, c) for i, c in indexed if c.shares_main]]
                main_run: Run | None = None
                for batch in (group for group in groups if group):
                    print(f"  loop: {', '.join(c.name for _, c in batch)} ...", end="",
                          flush=True)
                    runs = [loop_start(config, index, tickets=tickets, workdir=workdir,
                                       models=models) for index, config in batch]
                    loop_drive(runs, models=models, workers=workers, timeout=timeout)
                    main_run = main_run or next(
                        (r for r in runs if r.config.name == haao().name), None)
                    for run in runs:
                        results[run.config.name] = (loop_outcome(run, main_run, draws),
                                                    run.finished - run.started)
                        print(f"\n    {row(run.config.name, results[run.config.name][0])}",
                              end="")
                    print(f"\n    {max(r.finished for r in runs) - runs[0].started:.0f} s",
                          flush=True)
            finally:
                workers.stop()
                models.stop()
            if models.unknown:
                raise SystemExit(f"The scripted models could not place some requests: "
                                 f"{dict(models.unknown)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


# --- Report --------------------------------------------------------------------------------------

def row(name: str, out: Outcome) -> str:
    return (f"{name:<30}{out.tickets:>6}{out.accepted:>7}{out.rejected:>6}{out.blocked:>6}"
            f"{out.sent_back:>6}"
            f"{out.acceptance:>8.1f}%{out.cost:>10.2f}{out.per_accepted:>10.4f}"
            f"{out.by_role['decompose']:>9.2f}{out.by_role['code']:>9.2f}"
            f"{out.by_role['solve']:>8.2f}{out.by_role['audit']:>8.2f}")


HEADER = (f"{'configuration':<30}{'tickets':>6}{'accept':>7}{'rej.':>6}{'block':>6}{'back':>6}"
          f"{'accept%':>9}{'cost $':>10}{'$/accept':>10}{'decomp':>9}{'code':>9}{'solve':>8}"
          f"{'audit':>8}")


def what_ifs(retry_budgets: list[int]) -> list[Config]:
    """The product's configurations (replayed in the loop) and what-ifs (model only)."""
    main = haao()
    configs = [main, ALL_CLOUD, haao("haao, small auditor", auditor="small")]
    configs += [haao(f"haao, retry budget {b}", retry_budget=b, shares_main=True)
                for b in retry_budgets if b != main.retry_budget]
    extra = [
        haao("max cloud attempts 2", max_cloud_attempts=2),
        haao("max cloud attempts 3", max_cloud_attempts=3),
        haao("audit local work only", cloud_work_auditor=None),
        haao("small auditor, 3 cloud att.", auditor="small", max_cloud_attempts=3),
        haao("small aud. + cloud if c>=3", auditor="small", second_auditor_from=3,
             max_cloud_attempts=3),
        haao("small aud. + cloud if c>=4", auditor="small", second_auditor_from=4,
             max_cloud_attempts=3),
        haao("escalate after failed audit", escalate_after_failed_audit=True,
             max_cloud_attempts=2),
        haao("no audit", auditor=None, max_cloud_attempts=3),
    ]
    return configs + [replace(config, loop=False) for config in extra]


def search(draws: Draws, tickets: int, reviews: int) -> None:
    """Try combinations of product changes on the model; print the cheapest configuration
    for each acceptance gap (the frontier), checked again on four times the tickets, and
    whether any reaches the goal (ratio <= 0.40, at most 2 points below all-cloud)."""
    import itertools

    cloud = model_run(replace(ALL_CLOUD, reviews=reviews), draws, tickets)
    found = []
    grid = itertools.product(
        (("cloud",), ("small",), ("small", "local"), ("cloud", "local"), ("small", "cloud")),
        ((), ("small",), ("cloud",)), (0, 3, 4, 5), (0, 3, 4, 5), (2, 3), (False, True))
    for chain, cloud_chain, extra_from, cloud_from, attempts, escalate in grid:
        config = haao("search", audit_chain=chain, cloud_audit_chain=cloud_chain,
                      second_auditor_from=extra_from, cloud_from=cloud_from,
                      max_cloud_attempts=attempts, escalate_after_failed_audit=escalate,
                      loop=False, reviews=reviews)
        out = model_run(config, draws, tickets)
        found.append((out.per_accepted / cloud.per_accepted, cloud.acceptance - out.acceptance,
                      config))
    # The frontier: no other combination is both cheaper and closer to all-cloud.
    frontier = [f for f in found if not any(
        g[0] <= f[0] and g[1] <= f[1] and (g[0], g[1]) != (f[0], f[1]) for g in found)]
    big_cloud = model_run(replace(ALL_CLOUD, reviews=reviews), draws, 4 * tickets)
    checked = []
    for _, _, config in frontier:
        out = model_run(config, draws, 4 * tickets)
        checked.append((out.per_accepted / big_cloud.per_accepted,
                        big_cloud.acceptance - out.acceptance, config))
    goal = [f for f in checked if f[0] <= 0.40 and f[1] <= 2.0]
    print(f"\nSearch: {len(found)} combinations on {tickets} tickets; its frontier "
          f"({len(frontier)}) again on {4 * tickets} tickets; {len(goal)} reach the goal.")
    print(f"{'ratio':>6}{'gap':>6}  audit chain of local work / of the Tech Lead's work / "
          "+cloud audit from complexity / Tech Lead codes from complexity / cloud attempts / "
          "escalate after a failed audit")
    for ratio, gap, c in sorted(checked, key=lambda f: f[1]):
        print(f"{ratio:>6.3f}{gap:>6.1f}  " + " / ".join(str(v) for v in (
            "+".join(c.audit_chain), "+".join(c.cloud_audit_chain) or "none",
            c.second_auditor_from, c.cloud_from, c.max_cloud_attempts,
            c.escalate_after_failed_audit)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tickets", type=int, default=None,
                        help="default 500 (at least 500), or 48 with --quick")
    parser.add_argument("--quick", action="store_true",
                        help="48 tickets, retry budgets 0 and 3 only (for CI)")
    parser.add_argument("--retry-budgets", default="0-5", help="e.g. 0-5 or 0,3")
    parser.add_argument("--model-only", action="store_true",
                        help="only the expected-value model (no database, no workers)")
    parser.add_argument("--search", action="store_true",
                        help="with --model-only: search product changes that reach the goal")
    parser.add_argument("--model-tickets", type=int, default=10_000,
                        help="tickets of the model's expected values (what-ifs)")
    parser.add_argument("--reviews", type=int, default=Config.reviews,
                        help="Gate 2 reviews per ticket: 2 (the default) sends rejected work "
                             "back once with feedback, 1 makes a rejection final")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size of each")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds per group of configurations")
    args = parser.parse_args()
    tickets = args.tickets if args.tickets is not None else (48 if args.quick else 500)
    if tickets < (1 if args.quick else 500):
        parser.error("--tickets must be at least 500 (the issue's trace size) unless --quick")
    try:
        if "-" in args.retry_budgets:
            low, high = (int(part) for part in args.retry_budgets.split("-", 1))
            budgets = list(range(low, high + 1))
        else:
            budgets = [int(part) for part in args.retry_budgets.split(",")]
    except ValueError:
        parser.error("--retry-budgets takes a range (0-5) or a list (0,3)")
    if args.quick and args.retry_budgets == "0-5":
        budgets = [0, 3]
    if not budgets or any(not 0 <= b <= 20 for b in budgets):
        parser.error("--retry-budgets must be between 0 and 20 (the policy's range)")
    if not 1 <= args.reviews <= 5:
        parser.error("--reviews must be between 1 and 5")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haao.settings")
    trace = trace_load()
    draws = Draws(trace, args.seed)
    configs = [replace(config, reviews=args.reviews) for config in what_ifs(budgets)]
    began = time.perf_counter()
    main_config = haao()
    print(f"HAAO's defaults (policies.rules): retry_budget={main_config.retry_budget}, "
          f"escalation_allowed={main_config.escalation}, "
          f"max_cloud_attempts={main_config.max_cloud_attempts}, "
          f"audit={main_config.auditor or 'off'}, "
          "audit of the Tech Lead's own work="
          f"{'no' if main_config.cloud_work_auditor is None else 'yes'}, "
          f"max_audit_failures={main_config.max_audit_failures}; Gate 2 reviews per "
          f"ticket={args.reviews}\n")
    modelled = {config.name: model_run(config, draws, tickets) for config in configs}
    print(f"Expected-value model on the same {tickets} tickets (seed {args.seed}):")
    print(HEADER)
    for config in configs:
        if config.loop:
            print(row(config.name, modelled[config.name]))
    expected = {config.name: model_run(config, draws, args.model_tickets)
                for config in configs}
    cloud = expected[ALL_CLOUD.name]
    print(f"\nExpected values ({args.model_tickets} tickets of the same trace and seed); "
          "* = a what-if the product does not offer today:")
    print(HEADER + f"{'ratio':>7}{'gap':>6}")
    for config in configs:
        out = expected[config.name]
        print(row(config.name + ("" if config.loop else " *"), out)
              + f"{out.per_accepted / cloud.per_accepted:>7.3f}"
              f"{cloud.acceptance - out.acceptance:>6.1f}")
    if args.search:
        search(draws, args.model_tickets // 4, args.reviews)
    looped: dict[str, tuple[Outcome, float]] = {}
    if not args.model_only:
        runs = [config for config in configs if config.loop and (
            not args.quick or config.name != "haao, small auditor")]
        print(f"\nThe real loop ({len(runs)} configurations, {args.workers} workers of "
              f"--concurrency {args.concurrency}):")
        looped = loop_all(runs, tickets=tickets, draws=draws, timeout=args.timeout,
                          workers_count=args.workers, concurrency=args.concurrency)
        print(HEADER)
        for config in runs:
            out, wall = looped[config.name]
            print(row(config.name, out) + f"  ({wall:.0f} s)")
        apart = loop_apart_from_model(looped, modelled)
        if apart:
            raise SystemExit("The loop did not do what the model of its rules does on the same "
                             "tickets:\n" + "\n".join(apart))
    figures = {name: out for name, (out, _) in looped.items()} if looped else modelled
    source = "loop" if looped else "model"
    main_out, cloud_out = figures[haao().name], figures[ALL_CLOUD.name]
    print(f"\nFigures from the {source} (HAAO's ledger)" if looped else "\nFigures from the model")
    print(f"tickets={tickets}")
    print(f"seed={args.seed}")
    print(f"gate2_reviews={args.reviews}")
    print(f"haao_cost_per_accepted_usd={main_out.per_accepted:.4f}")
    print(f"allcloud_cost_per_accepted_usd={cloud_out.per_accepted:.4f}")
    print(f"cost_ratio={main_out.per_accepted / cloud_out.per_accepted:.3f}")
    print(f"haao_acceptance_pct={main_out.acceptance:.1f}")
    print(f"allcloud_acceptance_pct={cloud_out.acceptance:.1f}")
    print(f"acceptance_gap_pts={cloud_out.acceptance - main_out.acceptance:.1f}")
    small = figures.get("haao, small auditor")
    if small is not None:
        print(f"small_auditor_cost_ratio={small.per_accepted / cloud_out.per_accepted:.3f}")
        print(f"small_auditor_acceptance_pct={small.acceptance:.1f}")
    for budget in budgets:
        name = haao().name if budget == haao().retry_budget else f"haao, retry budget {budget}"
        out = figures[name]
        print(f"ratio_retry_budget_{budget}={out.per_accepted / cloud_out.per_accepted:.3f}")
        print(f"acceptance_pct_retry_budget_{budget}={out.acceptance:.1f}")
    model_main, model_cloud = modelled[haao().name], modelled[ALL_CLOUD.name]
    print(f"model_cost_ratio={model_main.per_accepted / model_cloud.per_accepted:.3f}")
    print(f"model_acceptance_gap_pts={model_cloud.acceptance - model_main.acceptance:.1f}")
    exp_main, exp_cloud = expected[haao().name], expected[ALL_CLOUD.name]
    print(f"expected_cost_ratio={exp_main.per_accepted / exp_cloud.per_accepted:.3f}")
    print(f"expected_acceptance_gap_pts={exp_cloud.acceptance - exp_main.acceptance:.1f}")
    print(f"seconds={time.perf_counter() - began:.0f}")


if __name__ == "__main__":
    main()
