"""A small client for the Confluent Schema Registry REST API (Confluent's registry, Karapace,
Apicurio Registry under ``/apis/ccompat/v7``), as the Rust crate ``vigil-registry``: register
vigil's schemas under a subject, and fetch writer schemas by id through a bounded cache.

Uses only the standard library (``urllib``), so the SDK has no new dependency.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from collections import OrderedDict
from typing import Any

from .errors import ConfigError, SchemaRegistryError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: The largest answer read from the registry.
MAX_BODY = 4 << 20

STRATEGIES = ("topic", "record", "topic_record")


def subject(strategy: str, topic: str, full_name: str) -> str:
    """The subject for message values of record ``full_name`` on ``topic``, by Confluent's
    ``TopicNameStrategy`` (``topic``, the default), ``RecordNameStrategy`` (``record``) or
    ``TopicRecordNameStrategy`` (``topic_record``)."""
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "record":
        return full_name
    if strategy == "topic_record":
        return f"{topic}-{full_name}"
    raise ConfigError(f"subject_name_strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


class SchemaRegistry:
    """A Confluent-API registry at ``url`` (the base the ``/subjects`` and ``/schemas/ids/{id}``
    paths hang from). ``auth`` is an optional (user, password) for HTTP basic auth; ``timeout`` is
    per request in seconds; ``cache_size`` bounds the writer schemas kept by id (oldest fetched
    forgotten first; ids are immutable, so a forgotten schema is fetched again). Thread-safe."""

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout: float = 5.0,
                 cache_size: int = 1000) -> None:
        base = url.strip().rstrip("/")
        problems = []
        if not base.startswith(("http://", "https://")):
            problems.append(f"schema_registry_url must start with http:// or https://, got {url!r}")
        if timeout <= 0:
            problems.append(f"timeout must be above zero, got {timeout}")
        if cache_size < 1:
            problems.append(f"cache_size must be at least 1, got {cache_size}")
        if problems:
            raise ConfigError("; ".join(problems))
        self.url = base
        self.timeout = timeout
        self.cache_size = cache_size
        self._auth = "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.fetched = 0

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.url + path
        headers = {"Accept": CONTENT_TYPE}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = CONTENT_TYPE
        if self._auth:
            headers["Authorization"] = self._auth
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read(MAX_BODY + 1)[:MAX_BODY])
        except urllib.error.HTTPError as error:
            text = error.read(MAX_BODY).decode("utf-8", "replace")
            try:
                answer = json.loads(text)
                message, code = answer.get("message", text), answer.get("error_code")
            except (ValueError, AttributeError):
                message, code = text[:500], None
            raise SchemaRegistryError(url, f"answered {error.code}: {message}", error.code, code) from None
        except (urllib.error.URLError, OSError) as error:
            raise SchemaRegistryError(url, f"unreachable: {getattr(error, 'reason', error)}") from None
        except ValueError as error:
            raise SchemaRegistryError(url, f"answer is not JSON: {error}") from None

    def register(self, subject_name: str, schema: dict[str, Any] | str) -> int:
        """Registers ``schema`` under ``subject_name`` (or finds it there) and returns its global
        id. An incompatible schema raises ``SchemaRegistryError`` with status 409."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        answer = self._request("POST", f"/subjects/{urllib.parse.quote(subject_name, safe='')}/versions",
                               {"schema": text})
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
            raise SchemaRegistryError(self.url, f"unexpected answer to a registration: {answer!r}")
        return answer["id"]

    def schema(self, schema_id: int) -> dict[str, Any]:
        """The Avro schema registered under ``schema_id`` (cached)."""
        with self._lock:
            found = self._cache.get(schema_id)
            if found is not None:
                return found
        answer = self._request("GET", f"/schemas/ids/{int(schema_id)}")
        if not isinstance(answer, dict) or not isinstance(answer.get("schema"), str):
            raise SchemaRegistryError(self.url, f"unexpected answer for schema id {schema_id}: {answer!r}")
        if answer.get("schemaType", "AVRO") != "AVRO":
            raise SchemaRegistryError(self.url, f"schema id {schema_id} is {answer['schemaType']}, not AVRO")
        parsed = json.loads(answer["schema"])
        with self._lock:
            self.fetched += 1
            self._cache[schema_id] = parsed
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return parsed
