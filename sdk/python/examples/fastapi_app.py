"""A FastAPI serving app that logs every prediction and outcome to vigil.

    pip install 'sdk/python[examples]'
    VIGIL_BROKERS=127.0.0.1:9092 uvicorn fastapi_app:app --app-dir sdk/python/examples
    curl -s localhost:8000/predict -H 'content-type: application/json' \\
         -d '{"features": {"amount": 129.99, "velocity_1h": 3}, "country": "DE"}'
    curl -s localhost:8000/outcome -H 'content-type: application/json' \\
         -d '{"prediction_id": "<from /predict>", "label": "fraud"}'

The model is a stand-in; what matters is that logging costs the request a few microseconds and
never fails it: an invalid event or a full queue is counted (see /vigil/stats) and the answer
goes out regardless.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from vigil_sdk import InvalidEvent, OutcomeEvent, Prediction, PredictionEvent, QueueFull, VigilProducer

MODEL_ID = "fraud-detector"
MODEL_VERSION = "2026.11.3"
log = logging.getLogger("fastapi_app")
vigil: VigilProducer | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global vigil
    vigil = VigilProducer(os.environ.get("VIGIL_BROKERS", "127.0.0.1:9092"))
    try:
        yield
    finally:
        vigil.close(timeout=5.0)  # bounded: shutdown never hangs on an unreachable broker


app = FastAPI(title="vigil SDK example", lifespan=lifespan)


class PredictRequest(BaseModel):
    features: dict[str, float]
    country: str = "unknown"
    device: str = "web"


class PredictResponse(BaseModel):
    prediction_id: str
    label: str
    score: float


class OutcomeRequest(BaseModel):
    prediction_id: str
    label: str | None = None
    value: float | None = None


def model(features: dict[str, float]) -> float:
    """A stand-in for a real model: a logistic score of the feature sum."""
    return 1.0 / (1.0 + math.exp(-sum(features.values()) / 100.0))


def log_to_vigil(event: PredictionEvent | OutcomeEvent) -> None:
    """Logs without ever failing the request; drops and invalid events are counted in stats()."""
    assert vigil is not None
    try:
        if isinstance(event, PredictionEvent):
            vigil.log_prediction(event)
        else:
            vigil.log_outcome(event)
    except QueueFull:
        pass  # counted in stats().dropped_queue_full
    except InvalidEvent as error:
        log.warning("vigil refused an event: %s", error)  # counted in stats().invalid


@app.post("/predict", response_model=PredictResponse)
def predict(request: PredictRequest) -> PredictResponse:
    started = time.perf_counter()
    score = model(request.features)
    label = "fraud" if score >= 0.5 else "legit"
    event = PredictionEvent(  # prediction_id: a fresh UUID, returned to the client for /outcome
        model_id=MODEL_ID,
        model_version=MODEL_VERSION,
        numeric_features=request.features,
        categorical_features={"device": request.device},
        segment={"country": request.country},
        prediction=Prediction(label=label, score=score),
        serving_latency_ms=(time.perf_counter() - started) * 1000.0,
    )
    log_to_vigil(event)
    return PredictResponse(prediction_id=event.prediction_id, label=label, score=score)


@app.post("/outcome", status_code=202)
def outcome(request: OutcomeRequest) -> dict[str, str]:
    log_to_vigil(OutcomeEvent(model_id=MODEL_ID, prediction_id=request.prediction_id, label=request.label, value=request.value))
    return {"status": "accepted"}


@app.get("/vigil/stats")
def stats() -> dict[str, int]:
    assert vigil is not None
    s = vigil.stats()
    return {field: getattr(s, field) for field in ("enqueued", "delivered", "failed", "dropped_queue_full", "sampled_out", "invalid")}
