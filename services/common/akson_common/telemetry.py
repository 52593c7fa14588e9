"""OpenTelemetry tracing: HTTP in (FastAPI) and out (httpx), context carried through pub/sub.

Dapr copies the ``traceparent`` header of a publish request into the CloudEvent and hands it
to the subscriber as a header again, so instrumenting HTTP in and out is enough for a trace to
cross a topic.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

_provider: TracerProvider | None = None


def configure_tracing(
    app: FastAPI, service_name: str, otlp_endpoint: str = "", exporter: SpanExporter | None = None
) -> TracerProvider:
    """Instrument ``app``; export to OTLP when an endpoint is set, or to ``exporter`` (tests)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint}/v1/traces"))
            )
        trace.set_tracer_provider(_provider)
        HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_provider, excluded_urls="healthz,readyz"
    )
    return _provider
