"""Write a pipeline transform plugin in Python.

The same shape as the Rust `guest-sdk`: a ``transform(record)`` function returning an
``Output``, a list of outputs, or ``None`` (dropped on purpose); ``DomainError`` sends the
record to the dead-letter queue, ``InfrastructureError`` is retried by the host. The
packed batches of ``wit/plugin.wit`` are decoded here, so a plugin sees plain records::

    import pipeline_plugin as pp

    def transform(record):
        event = record.json()
        return pp.Output.json({"id": event["id"]}).with_key(event["id"])

    WitWorld = pp.plugin("my-plugin", "0.1.0", transform)

``componentize-py -d wit -w transform componentize -p guest-sdk-python -p DIR app -o
app.wasm`` builds the component (``./dev plugins`` does it for ``plugins-python/*``).
"""

import json

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import host, types
from wit_world.imports import lookup as _lookup

_NONE = 0xFFFF_FFFF
_RECORD_WORDS = 6
_ATTRIBUTE_WORDS = 4


class DomainError(Exception):
    """The data is bad: retrying cannot help. The record goes to the dead-letter queue."""


class InfrastructureError(Exception):
    """Something transient went wrong: the host retries the record, then dead-letters it."""


class Record:
    """One input record: payload bytes, an optional key, and attributes the host set
    (``source``, ``stream``, ``shard``, ``line``, ...)."""

    __slots__ = ("key", "payload", "attributes")

    def __init__(self, payload, key=None, attributes=()):
        self.payload = bytes(payload)
        self.key = key
        self.attributes = list(attributes)

    def text(self):
        """The payload as UTF-8 text; not UTF-8 is a ``DomainError``."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DomainError(f"payload is not UTF-8: {e}") from None

    def json(self):
        """The payload parsed as JSON; not JSON is a ``DomainError``. Strict, as serde_json
        is: UTF-8 only (no BOM, no UTF-16), no ``NaN`` or ``Infinity``, nesting bounded."""
        try:
            return json.loads(
                self.payload.decode("utf-8"),
                parse_constant=_no_constant,
                parse_float=_finite_float,
            )
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise DomainError(f"invalid JSON payload: {e}") from None

    def attribute(self, name):
        """The attribute ``name``'s value, or ``None``."""
        for key, value in self.attributes:
            if key == name:
                return value
        return None


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _bytes(value, what):
    """``value`` (text or bytes) as bytes; anything else is a bug in the plugin."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise DomainError(f"the {what} is not valid text (a lone surrogate)") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"the {what} must be str or bytes, not {type(value).__name__}")


class Output:
    """One output record: payload bytes, and optionally a key, a destination (a sink
    name; none: the default sink) and attributes."""

    __slots__ = ("payload", "key", "destination", "attributes")

    def __init__(self, payload):
        self.payload = _bytes(payload, "payload")
        self.key = None
        self.destination = None
        self.attributes = []

    @staticmethod
    def json(value):
        """An output whose payload is ``value`` as compact JSON (as serde_json writes it)."""
        return Output(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def with_key(self, key):
        self.key = _bytes(key, "key")
        return self

    def to(self, destination):
        self.destination = destination
        return self

    def with_attribute(self, name, value):
        self.attributes.append((name, value))
        return self


class Config:
    """The plugin's settings (``--config key=value``, the manifest's defaults)."""

    def __init__(self, pairs=()):
        self._values = dict(pairs)

    def get(self, name, default=None):
        return self._values.get(name, default)

    def parse_or(self, name, default, parse=float):
        """The setting parsed by ``parse``, or ``default``; a bad value is a
        ``DomainError`` naming the setting."""
        raw = self._values.get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise DomainError(f"config {name}={raw!r} is not valid") from None


_config = Config()


def config():
    """The plugin's settings, as ``init`` received them."""
    return _config


class log:
    """Structured log lines, tagged by the host with the plugin's name and version."""

    @staticmethod
    def trace(message):
        host.log(types.LogLevel.TRACE, str(message))

    @staticmethod
    def debug(message):
        host.log(types.LogLevel.DEBUG, str(message))

    @staticmethod
    def info(message):
        host.log(types.LogLevel.INFO, str(message))

    @staticmethod
    def warn(message):
        host.log(types.LogLevel.WARN, str(message))

    @staticmethod
    def error(message):
        host.log(types.LogLevel.ERROR, str(message))


def counter(name, delta=1):
    """Adds ``delta`` to the counter ``name`` (a metric ``plugin.NAME`` in Lambda)."""
    host.counter(name, delta)


def gauge(name, value):
    """Sets the gauge ``name`` to ``value``."""
    host.gauge(name, float(value))


class LookupNotGranted(DomainError):
    """The plugin was not granted the table (its manifest does not declare it, or the
    operator did not map it): a bug to fix, not data to retry."""


class LookupUnavailable(InfrastructureError):
    """The table cannot be read now (throttled, timed out, unreachable, out of time): the
    records that needed it are retried or handed back, never dead-lettered as bad data."""


class Found:
    """What one ``lookup`` found, by key: ``get(key)`` is the row's bytes (JSON) or
    ``None``; ``json(key)`` parses it."""

    def __init__(self, values):
        self._values = values

    def get(self, key):
        return self._values.get(key)

    def json(self, key):
        value = self.get(key)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError as e:
            raise DomainError(f"the looked-up value of {key!r} is not JSON: {e}") from None

    def __contains__(self, key):
        return self.get(key) is not None

    def __len__(self):
        return len(self._values)


# Tables stubbed for native unit tests (``stub_table``); ``None`` in a plugin, where
# lookups go to the host.
_stubs = None


def lookup(table, keys):
    """Looks ``keys`` up in the lookup table ``table`` with one call to the host (each
    distinct key once). Raises ``LookupUnavailable`` or ``LookupNotGranted``."""
    distinct = [k for k in dict.fromkeys(str(k) for k in keys)]
    if not distinct:
        return Found({})
    if _stubs is not None:
        values = _stub_get(table, distinct)
    else:
        try:
            values = _lookup.get(table, distinct)
        except Err as e:
            if isinstance(e.value, _lookup.LookupError_NotGranted):
                raise LookupNotGranted(f"lookup not granted: {e.value.value}") from None
            raise LookupUnavailable(f"lookup unavailable: {e.value.value}") from None
    return Found(dict(zip(distinct, (None if v is None else bytes(v) for v in values))))


def stub_table(table, rows):
    """For native unit tests: fills ``table`` with ``rows`` (key to a JSON value).
    Lookups of a table never stubbed raise ``LookupNotGranted``."""
    global _stubs
    _stubs = _stubs if _stubs is not None else {}
    _stubs[table] = {
        str(k): json.dumps(v, separators=(",", ":")).encode() for k, v in rows.items()
    }


def stub_unavailable(table, why):
    """For native unit tests: makes ``table`` fail as unavailable (a throttled table)."""
    global _stubs
    _stubs = _stubs if _stubs is not None else {}
    _stubs[table] = str(why)


def _stub_get(table, keys):
    rows = _stubs.get(table)
    if rows is None:
        raise LookupNotGranted(f"lookup not granted: table `{table}` is not stubbed")
    if isinstance(rows, str):
        raise LookupUnavailable(f"lookup unavailable: {rows}")
    return [rows.get(k) for k in keys]


def _span(data, offset, length):
    return data[offset : offset + length]


def _records(batch):
    """The batch's records, decoded from its tables."""
    data = batch.bytes
    words = batch.records
    attribute_words = batch.attributes
    records = []
    for base in range(0, len(words) - _RECORD_WORDS + 1, _RECORD_WORDS):
        key_offset, key_length, offset, length, first, count = words[base : base + _RECORD_WORDS]
        key = None if key_offset == _NONE else _span(data, key_offset, key_length)
        attributes = []
        for a in range(first, first + count):
            n_off, n_len, v_off, v_len = attribute_words[
                a * _ATTRIBUTE_WORDS : (a + 1) * _ATTRIBUTE_WORDS
            ]
            attributes.append(
                (
                    _span(data, n_off, n_len).decode("utf-8"),
                    _span(data, v_off, v_len).decode("utf-8"),
                )
            )
        records.append(Record(_span(data, offset, length), key, attributes))
    return records


class _Packer:
    """An output batch being written: bytes back to back, tables of spans."""

    def __init__(self):
        self.bytes = bytearray()
        self.outputs = []
        self.attributes = []
        self.results = []
        self.failures = []

    def span(self, value):
        if value is None:
            return (_NONE, 0)
        if isinstance(value, str):
            value = value.encode("utf-8")
        offset = len(self.bytes)
        self.bytes += value
        return (offset, len(value))

    def result(self, index, answer):
        if answer is None:
            answer = []
        elif isinstance(answer, Output):
            answer = [answer]
        first = len(self.outputs) // 8
        for output in answer:
            if not isinstance(output, Output):
                raise TypeError(f"transform returned {type(output).__name__}, not an Output")
            first_attribute = len(self.attributes) // _ATTRIBUTE_WORDS
            for name, value in output.attributes:
                self.attributes.extend(self.span(name) + self.span(value))
            self.outputs.extend(
                self.span(output.payload)
                + self.span(output.key)
                + self.span(output.destination)
                + (first_attribute, len(output.attributes))
            )
        self.results.extend((first, len(answer)))

    def fail(self, index, error):
        self.results.extend((len(self.outputs) // 8, 0))
        self.failures.append(types.RecordFailure(index, error))

    def batch(self):
        return types.OutputBatch(
            bytes(self.bytes), self.outputs, self.attributes, self.results, self.failures
        )


def plugin(name, version, transform, init=None, prepare=None):
    """The component's exports for ``transform`` (and ``init(config)``, which may raise
    ``DomainError`` to refuse the settings), as the class componentize-py looks for: assign
    it to ``WitWorld`` in the app module.

    With ``prepare(records)``, it runs once per batch first (to ``lookup`` the keys the
    batch needs, once), and ``transform(record, prepared)`` gets what it returned; an
    error it raises fails every record of the batch with it."""

    class WitWorld(_World):
        def info(self):
            return types.PluginInfo(name, version)

        def init(self, pairs):
            global _config
            _config = Config(pairs)
            if init is None:
                return
            try:
                init(_config)
            except DomainError as e:
                raise Err(types.Error_Domain(str(e)))
            except InfrastructureError as e:
                raise Err(types.Error_Infrastructure(str(e)))

        def transform(self, batch):
            packer = _Packer()
            records = _records(batch)
            prepared, failure = None, None
            if prepare is not None:
                try:
                    prepared = prepare(records)
                except DomainError as e:
                    failure = types.Error_Domain(str(e))
                except InfrastructureError as e:
                    failure = types.Error_Infrastructure(str(e))
            for index, record in enumerate(records):
                if failure is not None:
                    packer.fail(index, failure)
                    continue
                try:
                    answer = transform(record) if prepare is None else transform(record, prepared)
                except DomainError as e:
                    packer.fail(index, types.Error_Domain(str(e)))
                    continue
                except InfrastructureError as e:
                    packer.fail(index, types.Error_Infrastructure(str(e)))
                    continue
                # Any other exception is a bug: it traps, like a panic in Rust, and the host
                # isolates the record on a fresh instance (its traceback in the DLQ entry).
                packer.result(index, answer)
            return packer.batch()

    return WitWorld
