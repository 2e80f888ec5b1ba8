"""The project's one redactor: secrets and (optionally) personal data out of untrusted text.

Pure module (no Faust, no network). Log lines come from many services and carry
whatever their authors printed: tokens, connection strings, ``password=`` pairs. Before
any such text goes to the LLM (:func:`autopilot.analysis.build_messages`), to Slack or
the console (:mod:`autopilot.blockkit`), into the rule-based analysis
(:func:`autopilot.analysis.fallback_analysis`) or into the worker's own log lines
(:func:`autopilot.agents.security.install_log_redaction`), it passes through
:meth:`Redactor.redact`, which replaces each finding with ``[REDACTED:<kind>]``.

What is found, and by what (``kind`` → source):

* the worker's own configured secrets (``configured``): every value of
  :meth:`autopilot.settings.Settings.secret_values` (API keys, Slack webhook URL and
  bot token, Kafka passwords, GitHub webhook secret), matched exactly, longest first;
* the plugins of Yelp's ``detect-secrets`` (PyPI ``detect-secrets``, its regular
  expressions and their capture groups; the kind is the plugin's ``secret_type`` in
  snake case): ``aws_access_key`` (``AKIA…`` key ids and ``aws…secret…="<40 chars>"``),
  ``slack_token`` (``xox[abposr]-…`` tokens and ``hooks.slack.com`` webhook URLs),
  ``json_web_token`` (formally valid JWTs; the signature goes too),
  ``basic_auth_credentials`` (the password of ``scheme://user:password@host``; also
  with the RFC 3986 sub-delimiters ``&!$'()*+,;=`` that the plugin's pattern leaves out),
  ``private_key`` (the whole ``-----BEGIN … PRIVATE KEY-----`` block, to its END line
  or the end of the text), ``secret_keyword`` (the value of ``password=…``,
  ``"password": "…"``, ``secret: …``, ``api_key=…``, ``passwd``, ``pwd`` … pairs: the
  keyword list of detect-secrets' ``KeywordDetector``, its config-file forms; an
  unquoted value ends at white space, ``&``, ``,`` or ``;``), and the token formats
  of GitHub, GitLab, OpenAI, Stripe, SendGrid, npm, PyPI, Discord, Telegram, Twilio,
  Mailchimp, Azure storage, Artifactory, Square, IBM Cloud, Cloudant, SoftLayer;
* HTTP credentials (``authorization``), which ``detect-secrets`` has no plugin for:
  ``Bearer <token68>`` (RFC 6750; a token of at least 8 characters holding a digit or
  one of ``-._~+/``, so "Bearer authentication failed" is left alone) and
  ``Basic <base64 of user:password>`` (RFC 7617; only when it decodes to a
  ``user:password`` pair);
* with ``pii=True`` (``AUTOPILOT_REDACT_PII``, default off): e-mail addresses
  (``email``) and IPv4/IPv6 addresses (``ip_address``, checked with :mod:`ipaddress`,
  private ranges included).

What is *not* redacted: service names, metric names, versions, trace ids and other
hex strings (``detect-secrets``' entropy plugins are left out: they flag every request
id), and IP addresses or e-mails unless ``pii`` is on.

Counting: :meth:`Redactor.redact` calls ``on_redact(kind, n)`` with the number of
findings of each kind, once per *distinct* text: results are cached (the last
:data:`CACHE_SIZE` texts), because the notifier renders an incident's message again on
every change and the same line must not be counted (or scanned) again. The worker
wires ``on_redact`` to ``autopilot_redactions_total{kind}``.

The module keeps one process-wide redactor (:func:`redactor`), with detection on and
no configured secrets until :func:`configure` is called at worker start, so pure
code (prompt building, rendering) and tools (``autopilot backtest``) redact without
being handed one.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

__all__ = [
    "CACHE_SIZE",
    "KINDS",
    "OnRedact",
    "Redactor",
    "configure",
    "redact",
    "redactor",
]

#: Called with ``(kind, count)`` for the findings in a text not seen before.
OnRedact = Callable[[str, int], None]
#: Distinct texts whose result is remembered (not scanned nor counted again).
CACHE_SIZE = 4096
#: Shortest configured secret replaced (shorter ones would shred ordinary words).
MIN_SECRET_CHARS = 4


def _kind(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")


#: detect-secrets plugins whose regular expressions find a secret value in a string.
_PLUGINS: tuple[Any, ...] = tuple(
    cls()
    for cls in (
        AWSKeyDetector,
        SlackDetector,
        JwtTokenDetector,
        BasicAuthDetector,
        GitHubTokenDetector,
        GitLabTokenDetector,
        OpenAIDetector,
        StripeDetector,
        SendGridDetector,
        NpmDetector,
        PypiTokenDetector,
        DiscordBotTokenDetector,
        TelegramBotTokenDetector,
        TwilioKeyDetector,
        MailchimpDetector,
        AzureStorageKeyDetector,
        ArtifactoryDetector,
        SquareOAuthDetector,
        IbmCloudIamDetector,
        IbmCosHmacDetector,
        CloudantDetector,
        SoftlayerDetector,
    )
)
_PRIVATE_KEY = PrivateKeyDetector()
_JWT = _kind(JwtTokenDetector.secret_type)
_JWT_TAIL = re.compile(r"[A-Za-z0-9_\-.+/=]*")
_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_PUTTY_KEY = re.compile(r"PuTTY-User-Key-File-\d+:.*", re.DOTALL)
_KEYWORD = _kind("Secret Keyword")
_BASIC_AUTH = _kind(BasicAuthDetector.secret_type)
#: An unquoted keyword value ends here (log lines are ``k=v k2=v2``, query strings, CSV).
_VALUE_END = re.compile(r"[\s&,;]")
#: RFC 3986 userinfo ``user:password@``: sub-delims (``&!$'()*+,;=``) are allowed in a
#: password, which detect-secrets' BasicAuthDetector pattern leaves out.
_URL_PASSWORD = re.compile(r"://[^\s:/?#@\[\]]*:([^\s/?#@\[\]]+)@")
_BEARER = re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{8,}=*)")
_BASIC = re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

#: Every kind :meth:`Redactor.redact` can report.
KINDS: tuple[str, ...] = (
    "configured",
    *dict.fromkeys(_kind(p.secret_type) for p in _PLUGINS),
    _kind(PrivateKeyDetector.secret_type),
    _KEYWORD,
    "authorization",
    "email",
    "ip_address",
)


def _placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


Span = tuple[int, int, str]


class Redactor:
    """Replace secrets (and optionally e-mail and IP addresses) in text.

    Args:
        secrets: exact values to remove (the worker's own secrets); values shorter
            than ``min_secret_chars`` characters are ignored.
        pii: also redact e-mail and IP addresses (``AUTOPILOT_REDACT_PII``).
        on_redact: called with ``(kind, count)`` for each kind found in a text not
            seen before (e.g. a Prometheus counter's ``labels(kind).inc``); its
            exceptions are swallowed.
        cache_size: distinct texts remembered (0: no cache, every call counts).
        min_secret_chars: shortest secret replaced (default :data:`MIN_SECRET_CHARS`,
            so a short value does not shred ordinary words of log lines). A caller
            that redacts one known secret out of its own error text, where any
            occurrence is that secret, passes 1 (a short Redis password is removed).

    Thread-safe (the logging filter runs in any thread).
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        pii: bool = False,
        on_redact: OnRedact | None = None,
        cache_size: int = CACHE_SIZE,
        min_secret_chars: int = MIN_SECRET_CHARS,
    ) -> None:
        self._secrets = sorted(
            {s for s in secrets if s and len(s) >= max(1, min_secret_chars)},
            key=len,
            reverse=True,
        )
        self.pii = pii
        self.on_redact = on_redact
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, bool], str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        """Same as :meth:`redact`."""
        return self.redact(text)

    def redact(self, text: str, *, pii: bool | None = None) -> str:
        """``text`` with every finding replaced by ``[REDACTED:<kind>]``.

        Args:
            text: any untrusted text (a log line, a stack trace, an error message).
            pii: override the redactor's ``pii`` for this call (the worker's own log
                lines keep addresses: ``pii=False``).

        Returns:
            The redacted text (``text`` itself when nothing was found).
        """
        if not text:
            return text
        use_pii = self.pii if pii is None else pii
        key = (text, use_pii)
        if self._cache_size:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return cached
        clean, counts = self.scan(text, pii=use_pii)
        if self._cache_size:
            with self._lock:
                self._cache[key] = clean
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if counts and self.on_redact is not None:
            for kind, n in counts.items():
                try:
                    self.on_redact(kind, n)
                except Exception:  # a broken metrics hook must not leak text
                    pass
        return clean

    def scan(self, text: str, *, pii: bool | None = None) -> tuple[str, Counter[str]]:
        """Redact ``text`` without cache or callback.

        Returns:
            ``(redacted_text, counts)``: ``counts[kind]`` = findings of that kind.
        """
        use_pii = self.pii if pii is None else pii
        clean, counts = _replace(text, self._spans(text))
        if use_pii:  # on what is left, so a password@host is not taken for an e-mail
            clean, more = _replace(clean, _pii(clean))
            counts.update(more)
        return clean, counts

    # --- finders --------------------------------------------------------------------

    def _spans(self, text: str) -> Iterator[Span]:
        for secret in self._secrets:
            yield from _occurrences(text, secret, "configured")
        yield from _private_keys(text)
        for plugin in _PLUGINS:
            kind = _kind(plugin.secret_type)
            for regex in plugin.denylist:
                for match in regex.finditer(text):
                    start, stop = _secret_span(match)
                    if stop <= start:
                        continue
                    if kind == _JWT:  # detect-secrets' pattern stops before the signature
                        stop = _JWT_TAIL.match(text, stop).end()  # type: ignore[union-attr]
                        if not JwtTokenDetector.is_formally_valid(text[start:stop]):
                            continue
                    yield start, stop, kind
        yield from _keyword_values(text)
        yield from _authorization(text)


def _replace(text: str, found: Iterable[Span]) -> tuple[str, Counter[str]]:
    """Replace the spans in ``text``; earliest first, at one start the longest wins,
    overlapping findings merge into the first one (a JWT in a bearer header is one)."""
    spans = list(found)
    if not spans:
        return text, Counter()
    spans.sort(key=lambda s: (s[0], -s[1]))
    out: list[str] = []
    counts: Counter[str] = Counter()
    pos = 0
    end = -1
    for start, stop, kind in spans:
        if start < end:
            if stop > end:
                end = stop
                pos = stop
            continue
        out.append(text[pos:start])
        out.append(_placeholder(kind))
        counts[kind] += 1
        pos = end = stop
    out.append(text[pos:])
    return "".join(out), counts


def _secret_span(match: re.Match[str]) -> tuple[int, int]:
    """The secret inside a detect-secrets match: its capture group when the pattern
    captures the value after a keyword (``://user:(password)@``, ``aws…key="(…)"``),
    else the whole match (a group at the start is a token prefix such as ``ghp``)."""
    groups = [
        match.span(index)
        for index in range(1, match.re.groups + 1)
        if match.span(index)[0] > match.start()
        and match.span(index)[1] - match.span(index)[0] >= MIN_SECRET_CHARS
    ]
    if not groups:
        return match.start(), match.end()
    return max(groups, key=lambda span: span[1] - span[0])


def _occurrences(text: str, value: str, kind: str) -> Iterator[Span]:
    start = text.find(value)
    while start >= 0:
        yield start, start + len(value), kind
        start = text.find(value, start + len(value))


def _private_keys(text: str) -> Iterator[Span]:
    if not any(True for _ in _PRIVATE_KEY.analyze_string(text)):
        return
    kind = _kind(PrivateKeyDetector.secret_type)
    for match in _PRIVATE_KEY_BLOCK.finditer(text):
        yield match.start(), match.end(), kind
    for match in _PUTTY_KEY.finditer(text):
        yield match.start(), match.end(), kind


def _keyword_values(text: str) -> Iterator[Span]:
    """Values of ``password=…``-like pairs (detect-secrets' keyword regexes, config forms)."""
    for regex, group in CONFIG_DENYLIST_REGEX_TO_GROUP.items():
        for match in regex.finditer(text):
            start, stop = match.span(group)
            if start < 0 or stop <= start:
                continue
            quoted = start > 0 and text[start - 1] in "'\"`"
            if not quoted:
                cut = _VALUE_END.search(text, start, stop)
                if cut is not None:
                    stop = cut.start()
            if stop > start:
                yield start, stop, _KEYWORD


def _authorization(text: str) -> Iterator[Span]:
    for match in _URL_PASSWORD.finditer(text):
        yield match.start(1), match.end(1), _BASIC_AUTH
    for match in _BEARER.finditer(text):
        token = match.group(1)
        if any(c.isdigit() or c in "-._~+/" for c in token):
            yield match.start(1), match.end(1), "authorization"
    for match in _BASIC.finditer(text):
        try:
            decoded = base64.b64decode(match.group(1), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if ":" in decoded:
            yield match.start(1), match.end(1), "authorization"


def _pii(text: str) -> Iterator[Span]:
    for match in _EMAIL.finditer(text):
        yield match.start(), match.end(), "email"
    for match in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(match.group(0))
        except ValueError:
            continue
        yield match.start(), match.end(), "ip_address"
    for match in _IPV6.finditer(text):
        candidate = match.group(0)
        if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield match.start(), match.end(), "ip_address"


# --- the process-wide redactor ------------------------------------------------------

_current: list[Redactor] = [Redactor()]


def redactor() -> Redactor:
    """The process-wide redactor (detection on, no configured secrets, PII off until
    :func:`configure`)."""
    return _current[0]


def configure(
    secrets: Iterable[str] = (), *, pii: bool = False, on_redact: OnRedact | None = None
) -> Redactor:
    """Replace the process-wide redactor (called once at worker start); returns it."""
    _current[0] = Redactor(secrets, pii=pii, on_redact=on_redact)
    return _current[0]


def redact(text: str) -> str:
    """``redactor().redact(text)``: the process-wide redactor applied to ``text``."""
    return _current[0].redact(text)
