"""What the control plane measures and how it is read: Prometheus text, seed 001's model
metrics and the live window (see :mod:`neurons.metrics.service`)."""

from __future__ import annotations

from neurons.metrics.inference import Finished, InferenceRecorder
from neurons.metrics.models import ModelMetrics, ModelMetricsBook
from neurons.metrics.service import MetricsService

__all__ = ["Finished", "InferenceRecorder", "MetricsService", "ModelMetrics", "ModelMetricsBook"]
