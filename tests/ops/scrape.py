"""Reading a scrape with prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    """One scrape's families, by name, and their samples."""

    families: dict[str, list[Sample]]
    types: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """Parse the Prometheus text format."""
        families: dict[str, list[Sample]] = {}
        types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            families[family.name] = list(family.samples)
            types[family.name] = family.type
        return cls(families, types)

    @classmethod
    def get(cls, url: str, token: str | None = None) -> Scrape:
        """Scrape `url` (with the bearer token, if given)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return cls.parse(response.text)

    def samples(self, name: str, **labels: str) -> list[Sample]:
        """The samples named `name` (a family's name plus _total, _count...) with `labels`."""
        family = name
        for suffix in ("_total", "_count", "_sum", "_bucket", "_created"):
            if name.endswith(suffix) and name.removesuffix(suffix) in self.families:
                family = name.removesuffix(suffix)
        return [
            sample
            for sample in self.families.get(family, [])
            if sample.name == name
            and all(sample.labels.get(key) == value for key, value in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the matching samples' values (0 when none matches)."""
        return sum(sample.value for sample in self.samples(name, **labels))
