# syntax=docker/dockerfile:1
# One image per service, all from this file:
#   docker build --build-arg SERVICE=journal -t ghcr.io/akson-health/akson-journal:0.1.0 .
# The build stage installs only that service's locked dependencies (uv.lock, --package),
# the runtime stage is python slim with the virtualenv, run as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY services/ services/
# --no-editable: the workspace packages (akson_common and the service) are installed into the
# virtualenv, so the runtime stage needs nothing from /src.
RUN test -n "${SERVICE}" && test -f "services/${SERVICE}/${SERVICE}/main.py" \
 && uv sync --frozen --no-dev --no-editable --package "akson-${SERVICE}"

FROM ${PYTHON_IMAGE}
ARG SERVICE
RUN groupadd --system --gid 10001 akson \
 && useradd --system --uid 10001 --gid akson --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin akson
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AKSON_SERVICE=${SERVICE}
USER 10001:10001
EXPOSE 8000
# exec: uvicorn is PID 1 and gets the SIGTERM of a rolling update
CMD ["sh", "-c", "exec uvicorn \"${AKSON_SERVICE}.main:app\" --host 0.0.0.0 --port 8000 --no-access-log --proxy-headers"]
