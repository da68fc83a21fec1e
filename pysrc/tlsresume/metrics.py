"""Metrics export: the counters of key rings, session stores and client caches.

``snapshot()`` gathers them as a plain dict; ``render_prometheus()`` turns that into
Prometheus text exposition format without needing ``prometheus_client``; and
:class:`Collector` plugs the same figures into a ``prometheus_client`` registry::

    text = tlsresume.metrics.render_prometheus(tlsresume.metrics.snapshot(ring, store))
    from prometheus_client import REGISTRY
    REGISTRY.register(tlsresume.metrics.Collector(rings={"web": ring}, stores={"web": store}))

Rings and stores live in shared memory, so any process that holds or attaches one
reports the totals of all processes using it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

__all__ = ["snapshot", "render_prometheus", "Collector", "GAUGES"]


class HasStats(Protocol):
    def stats(self) -> Mapping[str, int]: ...


# Figures that go up and down (everything else only counts up).
GAUGES = frozenset(
    {
        "keys",
        "generation",
        "entries",
        "used_slots",
        "capacity",
        "size_bytes",
        "file_reloads",
        "last_sync_age",
        "sessions",
        "max_entries",
    }
)

_HELP = {
    "ring": "tlsresume session-ticket key ring",
    "store": "tlsresume shared server session store",
    "client": "tlsresume client session cache",
}


Source = Mapping[str, HasStats] | HasStats | Iterable[HasStats]


def _labelled(kind: str, objects: Source) -> dict[str, HasStats]:
    """``{label: object}`` from a mapping, one object, or an iterable of objects.

    An object given without a label is labelled with its ``name`` (a named ring or
    store), else ``"default"``.
    """
    if isinstance(objects, Mapping):
        return dict(objects)
    if callable(getattr(objects, "stats", None)):
        items: list[HasStats] = [objects]  # type: ignore[list-item]
    elif isinstance(objects, Iterable):
        items = list(objects)
    else:
        raise TypeError(
            f"{kind} sources must be an object with stats(), a list of them, or a dict "
            f"of label -> object, not {type(objects).__name__}"
        )
    out: dict[str, HasStats] = {}
    for obj in items:
        if not callable(getattr(obj, "stats", None)):
            raise TypeError(f"{type(obj).__name__} has no stats(); give rings, stores or caches")
        label = getattr(obj, "name", None)
        label = label if isinstance(label, str) and label else "default"
        if label in out:
            raise ValueError(
                f"two {kind} sources would both be labelled {label!r}; pass a dict "
                "{label: object} to label them yourself"
            )
        out[label] = obj
    return out


def snapshot(
    rings: Source | None = None,
    stores: Source | None = None,
    client_caches: Source | None = None,
) -> dict[str, Any]:
    """``{"ring": {label: stats}, "store": {...}, "client": {...}}`` of the given objects.

    Each argument is one object (``snapshot(ring, store)``), a list of them, or a
    dict mapping labels of your choosing to objects. Unlabelled objects take their
    name (a named ring or store) or ``"default"``.

    Raises:
        TypeError: something without ``stats()`` was given.
        ValueError: two unlabelled objects of one kind have the same label.
    """
    out: dict[str, Any] = {}
    for kind, objects in (("ring", rings), ("store", stores), ("client", client_caches)):
        if objects is None:
            continue
        labelled = _labelled(kind, objects)
        if labelled:
            out[kind] = {name: dict(obj.stats()) for name, obj in labelled.items()}
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _families(snap: Mapping[str, Any]) -> Iterator[tuple[str, str, str, list[tuple[str, int]]]]:
    """(metric name, type, help, [(label value, number)]) per figure, in a stable order."""
    for kind in ("ring", "store", "client"):
        per_name = snap.get(kind) or {}
        figures = sorted({f for stats in per_name.values() for f in stats})
        for figure in figures:
            samples = [
                (name, int(stats[figure]))
                for name, stats in sorted(per_name.items())
                if figure in stats and isinstance(stats[figure], (int, float))
            ]
            if not samples:
                continue
            gauge = figure in GAUGES
            metric = f"tlsresume_{kind}_{figure}" + ("" if gauge else "_total")
            yield (
                metric,
                "gauge" if gauge else "counter",
                f"{_HELP[kind]}: {figure.replace('_', ' ')}",
                samples,
            )


def render_prometheus(snap: Mapping[str, Any]) -> str:
    """Prometheus text exposition format (version 0.0.4) of a :func:`snapshot`.

    A counter's ``# HELP``/``# TYPE`` lines carry the same name as its samples,
    ``..._total``, as ``prometheus_client`` writes them: parsers then read one
    counter family (named without ``_total``) holding the ``_total`` samples. A
    ``# TYPE`` line without the suffix would declare an empty family, and the
    samples would land in a second one of unknown type.
    """
    lines: list[str] = []
    for metric, kind, help_text, samples in _families(snap):
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} {kind}")
        label = metric.split("_")[1]
        for name, value in samples:
            lines.append(f'{metric}{{{label}="{_escape(name)}"}} {value}')
    return "\n".join(lines) + ("\n" if lines else "")


class Collector:
    """A ``prometheus_client`` collector over rings, stores and client caches."""

    def __init__(
        self,
        rings: Source | None = None,
        stores: Source | None = None,
        client_caches: Source | None = None,
    ) -> None:
        self._sources = (rings, stores, client_caches)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for metric, kind, help_text, samples in _families(snapshot(*self._sources)):
            label = metric.split("_")[1]
            if kind == "counter":
                family: Any = CounterMetricFamily(
                    metric[: -len("_total")], help_text, labels=[label]
                )
            else:
                family = GaugeMetricFamily(metric, help_text, labels=[label])
            for name, value in samples:
                family.add_metric([name], value)
            yield family

    def describe(self) -> list[Any]:
        return []  # figures depend on the objects' state: let the registry collect
