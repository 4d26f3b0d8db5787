"""Example plugin in Python: the `enrich` plugin of `plugins/enrich`, output for output.

Reads an event, keeps the fields downstream needs, and adds where the record came from.
Config: `currency` (default `EUR`).
"""

import math

import pipeline_plugin as pp

I64_MAX = 2**63 - 1


def field(event, name, kind):
    """`event[name]`, which must be of `kind` (a missing or mistyped field is bad data)."""
    value = event.get(name) if isinstance(event, dict) else None
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise pp.DomainError(f"invalid JSON payload: `{name}` is missing or not a {kind.__name__}")
    if kind is float:
        try:
            return float(value)
        except OverflowError:
            raise pp.DomainError(f"invalid JSON payload: `{name}` is out of range") from None
    return value


def cents(amount):
    """`amount * 100` rounded half away from zero, saturated to an i64 (as Rust's
    `f64::round` and `as i64` do)."""
    scaled = float(amount) * 100.0
    if math.isinf(scaled):
        return I64_MAX if scaled > 0 else -I64_MAX - 1
    magnitude = abs(scaled)
    whole = math.floor(magnitude)
    # `magnitude - whole` is exact, so halves round away from zero exactly.
    if magnitude - whole >= 0.5:
        whole += 1
    rounded = whole if scaled >= 0 else -whole
    return max(-I64_MAX - 1, min(I64_MAX, int(rounded)))


def day(ts):
    """The first 10 bytes of `ts` (a date), when they end on a character boundary."""
    try:
        raw = ts.encode("utf-8")
    except UnicodeEncodeError:
        raise pp.DomainError("`ts` is not valid text") from None
    if len(raw) < 10 or (len(raw) > 10 and raw[10] & 0xC0 == 0x80):
        raise pp.DomainError("`ts` is not an RFC 3339 time")
    return raw[:10].decode("utf-8")


def transform(record):
    event = record.json()
    user = field(event, "user", str)
    enriched = {
        "id": field(event, "id", str),
        "user": user,
        "action": field(event, "action", str),
        "amount_cents": cents(field(event, "amount", float)),
        "currency": pp.config().get("currency", "EUR"),
        "day": day(field(event, "ts", str)),
        "source": source if (source := record.attribute("source")) is not None else "unknown",
    }
    return pp.Output.json(enriched).with_key(user)


WitWorld = pp.plugin("enrich", "0.1.0", transform)
