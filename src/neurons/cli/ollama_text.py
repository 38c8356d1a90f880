"""What the Ollama-style commands print, as pure functions: host addresses, sizes, times,
tables, the ``show`` view and the ``--verbose`` timings, each worded as ``ollama`` words it so
that scripts and habits built on ``ollama`` output carry over."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "OLLAMA_PORT",
    "SHOW_FIELDS",
    "go_duration",
    "human_bytes",
    "human_duration",
    "human_number",
    "human_time",
    "list_table",
    "metrics_summary",
    "parse_host",
    "parse_time",
    "processor",
    "ps_table",
    "show_field",
    "show_info",
    "table",
]

OLLAMA_PORT = 11434
SHOW_FIELDS = ("license", "modelfile", "parameters", "system", "template")


def parse_host(value: str, default_port: int = OLLAMA_PORT) -> str:
    """The base URL to connect to for an ``OLLAMA_HOST``-style address.

    Ollama's forms: ``host``, ``host:port``, ``scheme://host[:port][/path]``, bracketed or bare
    IPv6. A bare host gets ``default_port``; an explicit ``http://`` or ``https://`` without a
    port gets 80 or 443, as in Ollama. The wildcard addresses a server binds to are not
    addresses to connect to, so they become loopback.

    >>> parse_host("")
    'http://127.0.0.1:11434'
    >>> parse_host("example.com")
    'http://example.com:11434'
    >>> parse_host("example.com:8000")
    'http://example.com:8000'
    >>> parse_host("0.0.0.0")
    'http://127.0.0.1:11434'
    >>> parse_host("0.0.0.0:8000")
    'http://127.0.0.1:8000'
    >>> parse_host("http://example.com")
    'http://example.com:80'
    >>> parse_host("https://example.com/ollama/")
    'https://example.com:443/ollama'
    >>> parse_host("http://[::1]:9000")
    'http://[::1]:9000'
    >>> parse_host("::")
    'http://[::1]:11434'
    >>> parse_host(":9000")
    'http://127.0.0.1:9000'
    >>> parse_host("localhost", default_port=8000)
    'http://localhost:8000'
    """
    text = value.strip()
    scheme, found, hostport = text.partition("://")
    if not found:
        scheme, hostport, port = "http", text, str(default_port)
    else:
        scheme = scheme.lower()
        port = {"http": "80", "https": "443"}.get(scheme, str(default_port))
    hostport, _, path = hostport.partition("/")
    host = hostport
    if hostport.startswith("["):  # [v6] or [v6]:port
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = rest[1:]
    elif hostport.count(":") == 1:  # host:port (more colons: a bare IPv6 address)
        host, _, maybe_port = hostport.partition(":")
        if maybe_port.isdigit() and int(maybe_port) <= 65535:
            port = maybe_port
    host = _connectable(host or "127.0.0.1")
    path = path.rstrip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


def _connectable(host: str) -> str:
    """``host`` as a URL host part: wildcard binds become loopback, IPv6 gets brackets."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


def human_bytes(size: int) -> str:
    """Decimal units, as Ollama prints sizes.

    >>> [human_bytes(n) for n in (512, 1000, 1500, 98_363_720, 4_700_000_000, 10**13)]
    ['512 B', '1 KB', '1.5 KB', '98 MB', '4.7 GB', '10 TB']
    """
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            value = size / scale
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def human_number(count: int) -> str:
    """A parameter count as Ollama abbreviates it.

    >>> [human_number(n) for n in (999, 134_515_008, 7_000_000_000, 8_030_261_248)]
    ['999', '134.52M', '7B', '8.0B']
    """
    if count >= 10**9:
        value = count / 10**9
        return f"{value:.0f}B" if value == math.floor(value) else f"{value:.1f}B"
    if count >= 10**6:
        value = count / 10**6
        return f"{value:.0f}M" if value == math.floor(value) else f"{value:.2f}M"
    if count >= 10**3:
        return f"{count / 10**3:.0f}K"
    return str(count)


def human_duration(seconds: float) -> str:
    """An approximate span, as Ollama's ``format.HumanTime`` words it.

    >>> [human_duration(s) for s in (0.5, 1, 42, 60, 150, 3600, 7200, 3 * 86400, 400 * 86400)]
    ['Less than a second', '1 second', '42 seconds', 'About a minute', '2 minutes', \
'About an hour', '2 hours', '3 days', '13 months']
    """
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def parse_time(text: object) -> datetime | None:
    """An API timestamp (RFC 3339, nanoseconds allowed); None for Go's zero time or none."""
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def human_time(when: datetime | None, zero: str, now: datetime | None = None) -> str:
    """``2 minutes ago``, ``4 minutes from now``, ``Forever`` (over 20 years ahead: a
    ``keep_alive`` of -1), or ``zero`` for no time at all.

    >>> now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    >>> human_time(datetime(2025, 1, 1, 11, 58, tzinfo=UTC), "Never", now)
    '2 minutes ago'
    >>> human_time(datetime(2025, 1, 1, 12, 4, 30, tzinfo=UTC), "Never", now)
    '4 minutes from now'
    >>> human_time(datetime(2318, 1, 1, tzinfo=UTC), "Never", now)
    'Forever'
    >>> human_time(None, "Never", now)
    'Never'
    """
    if when is None:
        return zero
    delta = ((now or datetime.now(UTC)) - when).total_seconds()
    if delta < 0 and -delta / 3600 >= 21 * 24 * 365:
        return "Forever"
    if delta < 0:
        return f"{human_duration(-delta)} from now"
    return f"{human_duration(delta)} ago"


def go_duration(nanoseconds: int) -> str:
    """A duration as Go's ``time.Duration.String`` prints it (Ollama's ``--verbose``).

    >>> [go_duration(n) for n in (0, 950, 139_898, 8_012_213, 1_500_000_000, 75 * 10**9)]
    ['0s', '950ns', '139.898µs', '8.012213ms', '1.5s', '1m15s']
    """
    if nanoseconds == 0:
        return "0s"
    sign, value = ("-", -nanoseconds) if nanoseconds < 0 else ("", nanoseconds)
    if value < 1000:
        return f"{sign}{value}ns"
    for unit, scale in (("µs", 10**3), ("ms", 10**6)):
        if value < scale * 1000:
            return sign + _decimal(value, scale) + unit
    hours, rest = divmod(value, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _decimal(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    return f"{sign}{minutes}m{text}" if minutes else sign + text


def _decimal(value: int, scale: int) -> str:
    whole, fraction = divmod(value, scale)
    digits = str(fraction).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def table(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns four spaces apart, no borders: Ollama's tablewriter layout."""
    lines = [list(header)] if header else []
    lines += [list(row) for row in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(lines[0]))]
    for line in lines:
        widths += [len(cell) for cell in line[len(widths) :]]
    return "\n".join(
        "    ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )


def _short_id(digest: object) -> str:
    return str(digest or "").removeprefix("sha256:")[:12]


def list_table(
    models: Sequence[Mapping[str, Any]], prefix: str | None = None, now: datetime | None = None
) -> str:
    """``ollama list``: NAME, ID (12 hex of the digest), SIZE, MODIFIED."""
    rows = [
        [
            str(model.get("name") or model.get("model", "")),
            _short_id(model.get("digest")),
            human_bytes(int(model.get("size") or 0)),
            human_time(parse_time(model.get("modified_at")), "Never", now),
        ]
        for model in models
        if not prefix or str(model.get("name", "")).lower().startswith(prefix.lower())
    ]
    return table(["NAME", "ID", "SIZE", "MODIFIED"], rows)


def processor(size: int, size_vram: int) -> str:
    """Where a loaded model sits, as ``ollama ps`` puts it.

    >>> [processor(100, 0), processor(100, 100), processor(100, 25), processor(0, 5)]
    ['100% CPU', '100% GPU', '75%/25% CPU/GPU', 'Unknown']
    """
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = round((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def ps_table(
    models: Sequence[Mapping[str, Any]], prefix: str | None = None, now: datetime | None = None
) -> str:
    """``ollama ps``: NAME, ID, SIZE, PROCESSOR, CONTEXT, UNTIL."""
    rows = []
    for model in models:
        if prefix and not str(model.get("name", "")).startswith(prefix):
            continue
        size, vram = int(model.get("size") or 0), int(model.get("size_vram") or 0)
        expires = parse_time(model.get("expires_at"))
        past = expires is not None and expires < (now or datetime.now(UTC))
        rows.append(
            [
                str(model.get("name") or model.get("model", "")),
                _short_id(model.get("digest")),
                human_bytes(size),
                processor(size, vram),
                str(model.get("context_length") or ""),
                "Stopping..." if past else human_time(expires, "Forever", now),
            ]
        )
    return table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows)


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _head(text: str, limit: int) -> list[list[str]]:
    """The first ``limit`` non-blank lines, then ``...`` if there were more."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rows = [["", line] for line in lines[:limit]]
    return rows + ([["", "..."]] if len(lines) > limit else [])


def _section(title: str, rows: list[list[str]]) -> str:
    return f"  {title}\n{table(None, rows)}\n"


def show_info(show: Mapping[str, Any]) -> str:
    """``ollama show MODEL``: the Model, Capabilities, Parameters, System and License
    sections, each a two-space title over a table, one blank line after each."""
    details: Mapping[str, Any] = show.get("details") or {}
    info: Mapping[str, Any] = show.get("model_info") or {}
    rows: list[list[str]] = []
    if info:
        arch = str(info.get("general.architecture", ""))
        parameters = str(details.get("parameter_size") or "")
        if not parameters and isinstance(info.get("general.parameter_count"), int | float):
            parameters = human_number(int(info["general.parameter_count"]))
        rows += [["", "architecture", arch], ["", "parameters", parameters]]
        for key in ("context_length", "embedding_length"):
            if f"{arch}.{key}" in info:
                rows.append(["", key.replace("_", " "), _number(info[f"{arch}.{key}"])])
    else:
        rows += [
            ["", "architecture", str(details.get("family", ""))],
            ["", "parameters", str(details.get("parameter_size", ""))],
        ]
    rows.append(["", "quantization", str(details.get("quantization_level", ""))])
    if show.get("requires"):
        rows.append(["", "requires", str(show["requires"])])
    sections = [_section("Model", rows)]
    if show.get("capabilities"):
        sections.append(_section("Capabilities", [["", str(c)] for c in show["capabilities"]]))
    parameters_text = str(show.get("parameters") or "")
    if parameters_text:
        params = [["", *line.split(None, 1)] for line in parameters_text.splitlines() if line]
        sections.append(_section("Parameters", params))
    for title, key in (("System", "system"), ("License", "license")):
        text = show.get(key)
        text = "\n".join(text) if isinstance(text, list) else str(text or "")
        if text.strip():
            sections.append(_section(title, _head(text, 2)))
    return "\n".join(sections)


def show_field(show: Mapping[str, Any], field: str) -> str:
    """One raw field of ``/api/show`` (``--license``, ``--modelfile``, ...), as printed."""
    value = show.get(field) or ""
    return "\n".join(value) if isinstance(value, list) else str(value)


def metrics_summary(final: Mapping[str, Any]) -> list[str]:
    """The ``--verbose`` timings from a stream's last chunk, lines as Ollama prints them."""
    lines = []

    def duration(key: str) -> int:
        return int(final.get(key) or 0)

    if duration("total_duration"):
        lines.append(f"total duration:       {go_duration(duration('total_duration'))}")
    if duration("load_duration"):
        lines.append(f"load duration:        {go_duration(duration('load_duration'))}")
    for prefix, label in (("prompt_eval", "prompt eval"), ("eval", "eval")):
        count, spent = int(final.get(f"{prefix}_count") or 0), duration(f"{prefix}_duration")
        if count:
            lines.append(f"{label + ' count:':<22}{count} token(s)")
        if spent:
            lines.append(f"{label + ' duration:':<22}{go_duration(spent)}")
            lines.append(f"{label + ' rate:':<22}{count / (spent / 1e9):.2f} tokens/s")
    return lines
