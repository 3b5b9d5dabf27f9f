"""Locale presets and explicit formatting options of a request: checked and resolved at
planning, applied by the transform (CSV text) and the XLSX writer (number formats).

Patterns use a small token set, translated to chrono's strftime for CSV text and to an
Excel number format for XLSX: yyyy (year), MM (month), dd (day), HH (hour 00-23), mm
(minute), ss (second), SSS (milliseconds), SSSSSS (microseconds); between tokens only
`.` `-` `/` `:` space and `T`. A pattern starts with a token, so a formatted value
never starts a formula."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from flows.control import errors

if TYPE_CHECKING:
    from flows.control.settings import Settings
    from flows.datapath.request import ExportRequest

Delimiter = Literal[",", ";", "\t", "|"]
DecimalSeparator = Literal[".", ","]
DELIMITERS, DECIMAL_SEPARATORS = get_args(Delimiter), get_args(DecimalSeparator)

# Longest first: SSSSSS before SSS.
TOKENS = {
    "yyyy": ("%Y", "yyyy"),
    "SSSSSS": ("%6f", "000"),  # Excel shows at most milliseconds
    "SSS": ("%3f", "000"),
    "MM": ("%m", "mm"),
    "dd": ("%d", "dd"),
    "HH": ("%H", "hh"),
    "mm": ("%M", "mm"),
    "ss": ("%S", "ss"),
}
# Literal characters and how an Excel number format spells them: `/` unescaped would be
# the reader's own date separator, and `-`, space and `T` need a backslash there.
LITERALS = {".": ".", ":": ":", "-": "\\-", "/": "\\/", " ": "\\ ", "T": "\\T"}
DATE_TOKENS = ("yyyy", "MM", "dd")
TIMESTAMP_TOKENS = ("yyyy", "MM", "dd", "HH", "mm")
MAX_PATTERN_CHARS = 40
MAX_TEXT_CHARS = 20
# Characters a label may not hold: CSV separators, quotes, line breaks (Polars writes a
# NULL label unquoted), and the formula triggers at its start.
_UNSAFE_TEXT = frozenset(',;\t|"\r\n')
_FORMULA_START = tuple("=+-@")
OPTIONS = (
    "delimiter",
    "decimal_separator",
    "date_pattern",
    "timestamp_pattern",
    "true_text",
    "false_text",
    "null_text",
)


def tokens(pattern: str, what: str) -> list[tuple[str, bool]]:
    """The pattern as (piece, is_token) pairs; InvalidPattern naming the problem."""
    out: list[tuple[str, bool]] = []
    at = 0
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise errors.InvalidPattern(
            f"{what} {pattern!r} must have 1 to {MAX_PATTERN_CHARS} characters"
        )
    while at < len(pattern):
        token = next((t for t in TOKENS if pattern.startswith(t, at)), None)
        if token is not None:
            out.append((token, True))
            at += len(token)
        elif pattern[at] in LITERALS:
            out.append((pattern[at], False))
            at += 1
        else:
            raise errors.InvalidPattern(
                f"{what} {pattern!r} holds {pattern[at]!r} at position {at + 1}; use the tokens "
                f"{', '.join(TOKENS)} separated by {' '.join(repr(c) for c in LITERALS)}"
            )
    if not out[0][1]:
        raise errors.InvalidPattern(f"{what} {pattern!r} must start with a token such as yyyy")
    return out


def check_pattern(pattern: str, what: str, required: tuple[str, ...], allowed: tuple) -> None:
    """Each required token once, nothing beyond `allowed`: no value loses its day."""
    found = [p for p, is_token in tokens(pattern, what) if is_token]
    extra = sorted(set(found) - set(allowed))
    if extra:
        raise errors.InvalidPattern(f"{what} {pattern!r} may not use {', '.join(extra)}")
    missing = [t for t in required if found.count(t) != 1]
    twice = [t for t in set(found) if found.count(t) > 1]
    if missing or twice:
        raise errors.InvalidPattern(
            f"{what} {pattern!r} must hold each of {', '.join(required)} exactly once"
        )
    if ("SSS" in found or "SSSSSS" in found) and "ss" not in found:
        raise errors.InvalidPattern(f"{what} {pattern!r} shows fractions: add ss before them")


def strftime(pattern: str) -> str:
    """The pattern as a chrono/Polars format string."""
    return "".join(TOKENS[p][0] if t else p for p, t in tokens(pattern, "pattern"))


def excel_format(pattern: str) -> str:
    """The pattern as an Excel number format code."""
    return "".join(TOKENS[p][1] if t else LITERALS[p] for p, t in tokens(pattern, "pattern"))


def _check_text(name: str, value: str, allow_empty: bool) -> None:
    if len(value) > MAX_TEXT_CHARS or (not value and not allow_empty):
        least = 0 if allow_empty else 1
        raise errors.InvalidOption(
            f"{name} {value!r} must have {least} to {MAX_TEXT_CHARS} characters"
        )
    if value.startswith(_FORMULA_START) or any(c in _UNSAFE_TEXT or c < " " for c in value):
        raise errors.InvalidOption(
            f"{name} {value!r} may not start with = + - @ nor hold , ; | TAB quotes or "
            "line breaks; choose plain words such as 'yes', 'no' or 'n/a'"
        )


def check_options(o: dict) -> None:
    """The effective options of a request (or a preset) agree with each other."""
    if o["decimal_separator"] == o["delimiter"]:
        raise errors.InvalidOption(
            f"the decimal separator {o['decimal_separator']!r} is also the delimiter; "
            "choose delimiter ';' with decimal separator ',', or decimal separator '.'"
        )
    if o["date_pattern"] is not None:
        check_pattern(o["date_pattern"], "date pattern", DATE_TOKENS, DATE_TOKENS)
    if o["timestamp_pattern"] is not None:
        check_pattern(o["timestamp_pattern"], "timestamp pattern", TIMESTAMP_TOKENS, tuple(TOKENS))
    for name in ("true_text", "false_text", "null_text"):
        if o[name] is not None:
            _check_text(name.replace("_", " "), o[name], allow_empty=name == "null_text")
    if o["true_text"] is not None and o["true_text"] == o["false_text"]:
        raise errors.InvalidOption("true text and false text must differ")


class Preset(BaseModel):
    """A named set of options; a request's explicit options override it."""

    model_config = ConfigDict(extra="forbid")

    delimiter: Delimiter = ","
    decimal_separator: DecimalSeparator = "."
    date_pattern: str | None = None
    timestamp_pattern: str | None = None
    true_text: str | None = None
    false_text: str | None = None
    null_text: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Preset:
        try:
            check_options(self.model_dump())
        except errors.InvalidRequest as exc:
            raise ValueError(exc.message) from None
        return self


# What the spreadsheet applications of each locale read as numbers, dates and booleans.
BUILT_IN = {
    "en-US": Preset(
        date_pattern="MM/dd/yyyy",
        timestamp_pattern="MM/dd/yyyy HH:mm:ss",
        true_text="TRUE",
        false_text="FALSE",
    ),
    "en-GB": Preset(
        date_pattern="dd/MM/yyyy",
        timestamp_pattern="dd/MM/yyyy HH:mm:ss",
        true_text="TRUE",
        false_text="FALSE",
    ),
    "de-DE": Preset(
        delimiter=";",
        decimal_separator=",",
        date_pattern="dd.MM.yyyy",
        timestamp_pattern="dd.MM.yyyy HH:mm:ss",
        true_text="WAHR",
        false_text="FALSCH",
    ),
    "fr-FR": Preset(
        delimiter=";",
        decimal_separator=",",
        date_pattern="dd/MM/yyyy",
        timestamp_pattern="dd/MM/yyyy HH:mm:ss",
        true_text="VRAI",
        false_text="FAUX",
    ),
}


def presets(settings: Settings) -> dict[str, Preset]:
    """The built-in presets, with the operator's (EXPORTFLOW_LOCALE_PRESETS) over them."""
    found = dict(BUILT_IN)
    for name, body in settings.locale_presets.items():
        try:
            found[name] = Preset.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "preset"
            raise errors.ConfigError(
                f"EXPORTFLOW_LOCALE_PRESETS: preset {name!r}, {where}: {err['msg']}"
            ) from None
    return found


def resolve(req: ExportRequest, settings: Settings) -> ExportRequest:
    """The request with every formatting option in effect filled in: the preset's, then the
    request's own. Stored so, a job formats the same when its run is resumed."""
    base: dict = {}
    if req.locale is not None:
        known = presets(settings)
        if req.locale not in known:
            raise errors.UnknownLocale(
                f"unknown locale {req.locale!r}; choose one of: {', '.join(sorted(known))}, "
                "or give the options (delimiter, decimal separator, patterns) yourself"
            )
        base = known[req.locale].model_dump()
    chosen = {k: getattr(req, k) for k in OPTIONS if getattr(req, k) is not None}
    merged = {**dict.fromkeys(OPTIONS), "delimiter": ",", "decimal_separator": "."}
    merged |= {**base, **chosen}
    if (merged["true_text"] is None) != (merged["false_text"] is None):
        # One label given: the other keeps its plain spelling.
        for name, plain in (("true_text", "true"), ("false_text", "false")):
            merged[name] = plain if merged[name] is None else merged[name]
    check_options(merged)
    return req.model_copy(update=merged)
