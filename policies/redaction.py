"""Secret redaction for everything HAAO sends to a cloud model."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from detect_secrets.filters.heuristic import (
    is_likely_id_string,
    is_potential_uuid,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from accounts.tokens import API_TOKEN_PREFIX

# detect-secrets is used as a library of maintained patterns, not through its scanner: its
# scan functions read and rewrite one process-wide Settings object (not safe with worker
# threads) and yield only secret values, which for patterns with a prefix group (GitHub,
# GitLab) is the prefix alone. Here each plugin's compiled `denylist` is run with finditer,
# giving exact spans, and the entropy plugins' own `calculate_shannon_entropy` decides; the
# plugin objects are built once at import and only read afterwards.

KNOWN_KIND = "HAAO endpoint key"
KNOWN_MIN_LENGTH = 8
MARKER = "[REDACTED {kind}]"
_MARKER_RE = re.compile(r"\[REDACTED [^\]\n]{1,40}\]")


@dataclass(frozen=True)
class Redaction:
    """What redaction did: the new text, how many secrets it replaced, and of which kinds."""

    text: str
    count: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, order=True)
class _Hit:
    start: int
    end: int
    kind: str


# --- detect-secrets plugins ------------------------------------------------------------------

# Not used: PrivateKeyDetector (matches a mere mention of "BEGIN RSA PRIVATE KEY"; whole
# blocks are handled below) and IPPublicDetector (public addresses are not credentials).
_REGEX_PLUGINS: tuple[tuple[RegexBasedDetector, str], ...] = (
    (AWSKeyDetector(), "AWS key"),
    (AzureStorageKeyDetector(), "Azure storage key"),
    (ArtifactoryDetector(), "Artifactory credentials"),
    (BasicAuthDetector(), "URL password"),
    (CloudantDetector(), "Cloudant credentials"),
    (DiscordBotTokenDetector(), "Discord token"),
    (GitHubTokenDetector(), "GitHub token"),
    (GitLabTokenDetector(), "GitLab token"),
    (IbmCloudIamDetector(), "IBM Cloud key"),
    (IbmCosHmacDetector(), "IBM COS key"),
    (MailchimpDetector(), "Mailchimp key"),
    (NpmDetector(), "npm token"),
    (OpenAIDetector(), "OpenAI key"),
    (PypiTokenDetector(), "PyPI token"),
    (SendGridDetector(), "SendGrid key"),
    (SlackDetector(), "Slack token"),
    (SoftlayerDetector(), "SoftLayer key"),
    (SquareOAuthDetector(), "Square key"),
    (StripeDetector(), "Stripe key"),
    (TelegramBotTokenDetector(), "Telegram token"),
    (TwilioKeyDetector(), "Twilio key"),
)
# detect-secrets' `build_assignment_regex` patterns (IBM, SoftLayer, Cloudant: `…key = "…"`)
# need a credential word on the line, so they run on candidate lines only, like the
# assignment patterns below; the rest run over the whole text.
_ASSIGNMENT_BEGIN = r"(?:(?<=\W)|(?<=^))"
_LINE_PLUGIN_PATTERNS = tuple(
    (pattern, kind) for plugin, kind in _REGEX_PLUGINS for pattern in plugin.denylist
    if pattern.pattern.startswith(_ASSIGNMENT_BEGIN))
_TEXT_PLUGIN_PATTERNS = tuple(
    (pattern, kind) for plugin, kind in _REGEX_PLUGINS for pattern in plugin.denylist
    if not pattern.pattern.startswith(_ASSIGNMENT_BEGIN))
# Every credential name above (ours and detect-secrets' keyword list) contains one of these:
# a line without any of them holds no assignment of a secret.
GATE_WORDS = ("key", "pw", "pass", "token", "secret", "credential", "contrase")
_GATE = re.compile("|".join(GATE_WORDS), re.IGNORECASE)
_JWT = JwtTokenDetector()
_JWT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/=")

# Limits: detect-secrets' defaults (4.5 bits per Base64 character, 3.0 per hex character),
# plus a minimum length so that short quoted hex such as a 12-character id stays readable.
_ENTROPY_PLUGINS: tuple[tuple[HighEntropyStringsPlugin, int], ...] = (
    (Base64HighEntropyString(limit=4.5), 20),
    (HexHighEntropyString(limit=3.0), 24),
)
_ENTROPY_KIND = "high-entropy string"
# Subresource-integrity digests (package-lock.json "integrity": "sha512-…") are public.
_HASH_PREFIX = re.compile(r"sha(?:1|256|384|512)-")
# A git object id on a line that says so ("commit": "9ae2f17…", sha = '…') is not a secret.
_GIT_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_GIT_WORDS = re.compile(r"commit|sha|rev|head|parent|tree|merge|base", re.IGNORECASE)

_KEYWORD_KIND = "secret value"
# The quotes-required forms (`password = "…"`, `"secret": "…"`, `"…" == password`).
_KEYWORD_FORMS: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP.items()
)

# --- HAAO's own patterns ---------------------------------------------------------------------

_PEM_BEGIN = re.compile(
    r"-{4,5} ?BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
_PEM_END = re.compile(
    r"-{4,5} ?END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
_PEM_MAX = 20_000  # an 8192-bit RSA key in PEM is about 6.5 KB
# A truncated block (no END line, e.g. `head` of a key file): its following key-material lines,
# allowing a diff's "+" and indentation.
_KEY_MATERIAL_LINE = re.compile(r"[ \t+>\"']*(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+: .*)[\"',]*\r?")
_PUTTY = re.compile(r"Private-Lines: *\d+\r?\n((?:[A-Za-z0-9+/=]+\r?\n)+)")

# (pattern, kind, group holding the secret or 0 for the whole match)
_PATTERNS: tuple[tuple[re.Pattern[str], str, int], ...] = (
    (re.compile(r"(?<![\w-])sk-ant-[A-Za-z0-9_\-]{20,}"), "Anthropic key", 0),
    (re.compile(r"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?"
                r"(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{20,}"),
     "OpenAI key", 0),
    (re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:test|live)_[0-9A-Za-z]{16,}"), "Stripe key", 0),
    (re.compile(r"(?<![A-Za-z0-9])whsec_[0-9A-Za-z+/=]{24,}"), "Stripe key", 0),
    (re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{35}"), "Google API key", 0),
    (re.compile(r"(?<![A-Za-z0-9])(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36,}"), "GitHub token", 0),
    (re.compile(r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{60,}"), "GitHub token", 0),
    # API tokens HAAO itself issues (accounts/tokens.py: prefix, 32 random + 6 checksum).
    (re.compile(rf"(?<![A-Za-z0-9]){re.escape(API_TOKEN_PREFIX)}[0-9A-Za-z]{{38}}(?![0-9A-Za-z])"),
     "HAAO API token", 0),
    (re.compile(r"\b[Bb]earer[ \t]+([A-Za-z0-9\-._~+/]{20,}=*)"), "bearer token", 1),
    # scheme://user:password@host — the password only, so the URL still reads.
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"<>]*:([^\s/@'\"<>]+)@"),
     "URL password", 1),
)

_CREDENTIAL_WORDS = (
    r"(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|auth[_-]?key|credentials?)(?:[_-]?key)?"
)
_KEY = rf"(?<![\w.\-])[\w.\-]*?{_CREDENTIAL_WORDS}(?!\w)"
# `KEY = "value"`, `"key": "value"`, `key: 'value'`, `key => "value"`, `f(key="value")`.
_QUOTED_ASSIGNMENT = re.compile(
    rf"(?P<key>{_KEY})[\"']?[ \t]*(?:=>|:=|=|:)[ \t]*[rbuRBU]?(?P<q>[\"'])"
    r"(?P<value>[^\s\"'\\]{4,})(?P=q)",
    re.IGNORECASE,
)
# `KEY=value` (.env, shell), `key: value` (YAML), `key = value` (INI): a whole line, one token.
_BARE_ASSIGNMENT = re.compile(  # run on one line at a time
    rf"^[ \t+\-]*(?:export[ \t]+)?(?P<key>{_KEY})[ \t]*(?:=|:)[ \t]*"
    r"(?P<value>[^\s\"'][^\s\"']{3,})[ \t]*(?:[ \t]#.*)?\r?$",
    re.IGNORECASE,
)
# The same inside a longer line (a log, a chat message, a comment): only a long token that
# mixes letters and digits, which code names and words do not.
_INLINE_ASSIGNMENT = re.compile(
    rf"(?P<key>{_KEY})[ \t]*(?:=|:)[ \t]*"
    r"(?P<value>(?=[^\s\"']*\d)(?=[^\s\"']*[A-Za-z])[A-Za-z0-9+/=_\-.~]{16,})(?![^\s,;)])",
    re.IGNORECASE,
)
# `password=hunter2` inside a longer line (a query string, a command line, a chat message):
# the tight `=` of a parameter, any value of four characters or more; code forms are told
# apart by `_code_reference` and `_placeholder`.
_PARAMETER_ASSIGNMENT = re.compile(
    rf"(?P<key>{_KEY})=(?P<value>[^\s\"'&,;=]{{4,}})(?=$|[\s&,;\"'])",
    re.IGNORECASE,
)
_NOT_VALUES = frozenset({
    "none", "null", "nil", "true", "false", "yes", "no", "on", "off", "undefined", "empty",
    "str", "bytes", "int", "float", "bool", "dict", "list", "tuple", "any", "object",
    "optional", "required", "string", "secret", "password", "token", "redacted", "hidden",
    "pass", "passwd", "pw", "pwd", "placeholder", "example",
})
# A message, not a secret: words separated by spaces, ending like a sentence.
_PROSE = re.compile(r"\S+(?: \S+)+[.!?:)]")
# The name of a setting (`secret_name = "ANTHROPIC_API_KEY"`), not its value.
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_TYPE_NAME = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z0-9]*)*")


def _placeholder(value: str) -> bool:
    """True for values that stand for a secret rather than being one."""
    v = value.strip()
    return (
        not v
        or v.lower() in _NOT_VALUES
        or is_templated_secret(v)
        or v.startswith(("$", "%(", "{{", "/", "./", "../", "~/", "http:", "https:", "<"))
        or set(v) <= set("*xX.-_#")
        or "REDACTED" in v
        or _ENV_NAME.fullmatch(v) is not None
    )


def _code_reference(value: str, key: str, separator: str) -> bool:
    """True for an unquoted value that reads as code: a name, an attribute, a call, a type."""
    if value.isdigit() and len(value) < 8:
        return True  # a number setting such as MAX_API_KEY = 1000
    if any(c in value for c in "()[]{}") or value[-1] in ",;" or value[0] in "&*!|>":
        return True
    if _DOTTED.fullmatch(value) and not any(c.isdigit() for c in value):
        return True
    if _IDENTIFIER.fullmatch(value):
        if "_" in value or value.lower() == key.lower():
            return True
        if separator == ":" and _TYPE_NAME.fullmatch(value):
            return True
    return False


# --- scanning --------------------------------------------------------------------------------

def _known_hits(text: str, known: tuple[str, ...]) -> Iterable[_Hit]:
    if not known:
        return
    for match in _known_pattern(known).finditer(text):
        yield _Hit(match.start(), match.end(), KNOWN_KIND)


@lru_cache(maxsize=64)
def _known_pattern(known: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so a key that contains another is replaced whole.
    return re.compile("|".join(re.escape(k) for k in sorted(known, key=len, reverse=True)))


def _pem_hits(text: str) -> Iterable[_Hit]:
    position = 0
    while (begin := _PEM_BEGIN.search(text, position)) is not None:
        end = _PEM_END.search(text, begin.end(), begin.end() + _PEM_MAX)
        if end is not None:
            stop = end.end()
        else:
            stop = _line_end(text, begin.end())
            while stop < len(text):
                following = _line_end(text, stop + 1)
                if not _KEY_MATERIAL_LINE.fullmatch(text, stop + 1, following):
                    break
                stop = following
        yield _Hit(begin.start(), stop, "private key")
        position = stop
    for match in _PUTTY.finditer(text):
        yield _Hit(match.start(1), match.end(1) - 1, "private key")


def _pattern_hits(text: str) -> Iterable[_Hit]:
    for pattern, kind, group in _PATTERNS:
        for match in pattern.finditer(text):
            value = match.group(group)
            if group and _placeholder(value):
                continue
            yield _Hit(match.start(group), match.end(group), kind)


def _candidate_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line holding a credential word, in order."""
    lowered = text.lower()
    if len(lowered) == len(text):  # lower() kept every offset (it does for almost all text)
        positions = sorted(i for word in GATE_WORDS for i in _find_all(lowered, word))
    else:
        positions = [match.start() for match in _GATE.finditer(text)]
    lines: list[tuple[int, int]] = []
    for position in positions:
        if lines and position < lines[-1][1]:
            continue
        lines.append((text.rfind("\n", 0, position) + 1, _line_end(text, position)))
    return lines


def _find_all(text: str, word: str) -> Iterable[int]:
    position = text.find(word)
    while position >= 0:
        yield position
        position = text.find(word, position + 1)


def _line_hits(text: str) -> Iterable[_Hit]:
    # Line by line as detect-secrets does: its keyword value pattern (`[^\v'"]*`) would
    # otherwise run across lines.
    for start, end in _candidate_lines(text):
        line = text[start:end]
        for hit in _assignment_hits(line):
            yield _Hit(start + hit.start, start + hit.end, hit.kind)
        for hit in _keyword_hits(line):
            yield _Hit(start + hit.start, start + hit.end, hit.kind)
        for pattern, kind in _LINE_PLUGIN_PATTERNS:
            for match in pattern.finditer(line):
                first, last = _secret_span(match)
                if not _placeholder(line[first:last]):
                    yield _Hit(start + first, start + last, kind)


def _assignment_hits(line: str) -> Iterable[_Hit]:
    for match in _QUOTED_ASSIGNMENT.finditer(line):
        if not _placeholder(match["value"]):
            yield _Hit(match.start("value"), match.end("value"), _KEYWORD_KIND)
    bare = _BARE_ASSIGNMENT.search(line)
    if bare is not None:
        value = bare["value"]
        separator = line[bare.end("key"):bare.start("value")].strip()
        if not _placeholder(value) and not _code_reference(value, bare["key"], separator):
            yield _Hit(bare.start("value"), bare.end("value"), _KEYWORD_KIND)
        return
    for pattern in (_INLINE_ASSIGNMENT, _PARAMETER_ASSIGNMENT):
        for match in pattern.finditer(line):
            value = match["value"]
            separator = line[match.end("key"):match.start("value")].strip()
            if not _placeholder(value) and not _code_reference(value, match["key"], separator):
                yield _Hit(match.start("value"), match.end("value"), _KEYWORD_KIND)


def _keyword_hits(line: str) -> Iterable[_Hit]:
    for pattern, group in _KEYWORD_FORMS:
        match = pattern.search(line)
        if match is None:
            continue
        value = match.group(group)
        if len(value) < 4 or _placeholder(value) or _PROSE.fullmatch(value):
            continue
        yield _Hit(match.start(group), match.end(group), _KEYWORD_KIND)


def _plugin_hits(text: str) -> Iterable[_Hit]:
    for pattern, kind in _TEXT_PLUGIN_PATTERNS:
        for match in pattern.finditer(text):
            start, end = _secret_span(match)
            if not _placeholder(text[start:end]):
                yield _Hit(start, end, kind)
    for match in _JWT.denylist[0].finditer(text):
        # The pattern's last part is lazy and stops before the signature: take all of it.
        end = match.end()
        while end < len(text) and text[end] in _JWT_CHARS:
            end += 1
        if _JWT.is_formally_valid(text[match.start():end]):
            yield _Hit(match.start(), end, "JWT")


def _secret_span(match: re.Match[str]) -> tuple[int, int]:
    """The secret inside a detect-secrets match: the group that ends the match (assignment
    patterns, `aws…key = "…"`), else the whole match without its delimiters."""
    for index in range(match.re.groups, 0, -1):
        start, end = match.span(index)
        if start >= 0 and end >= match.end() - 1 and end > start:
            return start, end
    start, end = match.span()
    while start < end and match.string[start] in " \t\r\n\"'=:":
        start += 1
    while end > start and match.string[end - 1] in " \t\r\n\"'":
        end -= 1
    return start, end


def _entropy_hits(text: str) -> Iterable[_Hit]:
    for plugin, min_length in _ENTROPY_PLUGINS:
        for match in plugin.regex.finditer(text):
            value = match.group(2)
            if (
                len(value) < min_length
                or plugin.calculate_shannon_entropy(value) <= plugin.entropy_limit
                or _HASH_PREFIX.match(value) is not None
                or is_sequential_string(value)
                or is_potential_uuid(value)
                or is_likely_id_string(value, line := _line_at(text, match.start()), plugin)
                or (_GIT_OBJECT_ID.fullmatch(value) and _GIT_WORDS.search(line))
            ):
                continue
            yield _Hit(match.start(2), match.end(2), _ENTROPY_KIND)


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end < 0 else end


def _line_at(text: str, position: int) -> str:
    return text[text.rfind("\n", 0, position) + 1:_line_end(text, position)]


_SCANNERS: tuple[Callable[[str], Iterable[_Hit]], ...] = (
    _pem_hits, _pattern_hits, _plugin_hits, _line_hits, _entropy_hits,
)


# On the same span, a provider's name tells the reader more than these.
_GENERIC_KINDS = frozenset({"bearer token", _KEYWORD_KIND, _ENTROPY_KIND})


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Whether [start, end) overlaps any of `spans` (sorted, not overlapping each other)."""
    index = bisect_left(spans, (end, end))  # the first span starting at or after `end`
    return index > 0 and spans[index - 1][1] > start


def _merge(hits: Iterable[_Hit], markers: list[tuple[int, int]]) -> list[_Hit]:
    """Non-overlapping hits in text order; overlapping hits become one (the first one's kind)."""
    merged: list[_Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, -h.end, h.kind in _GENERIC_KINDS)):
        if hit.end <= hit.start or _overlaps(hit.start, hit.end, markers):
            continue
        if merged and hit.start < merged[-1].end:
            last = merged[-1]
            if hit.end > last.end:
                merged[-1] = _Hit(last.start, hit.end, last.kind)
            continue
        merged.append(hit)
    return merged


def _usable_known(known: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({k for k in known if isinstance(k, str) and len(k) >= KNOWN_MIN_LENGTH}))


def _redact(text: str, known: tuple[str, ...]) -> Redaction:
    if not text:
        return Redaction(text=text)
    # Known keys first and on their own: they win over any overlapping detector hit.
    known_hits = list(_known_hits(text, known))
    markers = [(m.start(), m.end()) for m in _MARKER_RE.finditer(text)]
    known_hits = _merge(known_hits, markers)
    taken = sorted(markers + [(h.start, h.end) for h in known_hits])
    hits = known_hits + _merge(
        (hit for scan in _SCANNERS for hit in scan(text)), taken)
    if not hits:
        return Redaction(text=text)
    hits.sort()
    parts: list[str] = []
    position = 0
    for hit in hits:
        parts.append(text[position:hit.start])
        parts.append(MARKER.format(kind=hit.kind))
        position = hit.end
    parts.append(text[position:])
    kinds = Counter(hit.kind for hit in hits)
    return Redaction(text="".join(parts), count=len(hits), kinds=dict(kinds))


def redact(text: str, *, known: Iterable[str] = ()) -> Redaction:
    """`text` with every secret found replaced by "[REDACTED <kind>]"."""
    return _redact(text, _usable_known(known))


def redact_payload(value: Any, *, known: Iterable[str] = ()) -> tuple[Any, Redaction]:
    """A redacted deep copy of JSON-like data (keys kept, every string value redacted) and
    the totals, as a Redaction whose text is empty."""
    usable = _usable_known(known)
    kinds: Counter[str] = Counter()

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            done = _redact(item, usable)
            kinds.update(done.kinds)
            return done.text
        if isinstance(item, Mapping):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        if isinstance(item, tuple):
            return tuple(walk(inner) for inner in item)
        if hasattr(item, "model_dump"):
            # An SDK content block (e.g. a previous answer sent back): sent as its dict.
            return walk(item.model_dump(exclude_none=True, mode="json"))
        return item

    redacted = walk(value)
    return redacted, Redaction(text="", count=sum(kinds.values()), kinds=dict(kinds))
