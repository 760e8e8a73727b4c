"""Typed errors, mirroring `SdkError` and `ValidationError` in the Rust SDK."""

from __future__ import annotations


class VigilError(Exception):
    """Base class of every error the SDK raises."""

    #: Whether trying the same call again can help.
    retriable: bool = False


class InvalidEvent(VigilError, ValueError):
    """The event breaks a rule the schema cannot express; it was not sent.

    ``reason`` is the dead-letter reason the monitor would give the same event
    (``missing_model_id``, ``missing_field``, ``non_finite_value``, ``out_of_range``),
    or ``wrong_type`` for a value of the wrong Python type. Retrying never helps.
    """

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(f"invalid event: field {field} {detail}")
        self.field = field
        self.reason = reason
        self.detail = detail


class QueueFull(VigilError):
    """The send queue held ``capacity`` events; this event was dropped and counted.

    Retrying at once rarely helps: the queue drains at the speed of the broker.
    """

    retriable = True

    def __init__(self, capacity: int) -> None:
        super().__init__(f"the send queue is full ({capacity} events); the event was dropped")
        self.capacity = capacity


class ConfigError(VigilError, ValueError):
    """A producer setting is invalid; raised before connecting."""


class ProducerClosed(VigilError):
    """The producer was closed; nothing more can be logged with it."""


class KafkaProduceError(VigilError):
    """librdkafka refused the message for a reason other than a full queue."""

    def __init__(self, error: object) -> None:
        super().__init__(f"kafka: {error}")
        self.error = error
        retriable = getattr(error, "retriable", None)
        self.retriable = bool(retriable()) if callable(retriable) else False


class SchemaRegistryError(VigilError):
    """The Schema Registry refused a request or could not be reached.

    ``status`` is the HTTP status (``None`` when the registry was unreachable) and ``code`` the
    registry's ``error_code`` (e.g. 40403 for an unknown schema id, 409 for an incompatible
    schema). Retriable when the registry was unreachable or answered 5xx or 429.
    """

    def __init__(self, url: str, detail: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(f"schema registry {url}: {detail}")
        self.url = url
        self.status = status
        self.code = code
        self.retriable = status is None or status >= 500 or status == 429
