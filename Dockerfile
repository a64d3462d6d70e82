# authsvc image: the wheel built from this checkout on the pinned runtime of
# requirements.lock, run as an unprivileged user. The service, the edge (its nginx templates
# are package data) and the stack are in the wheel, so `authsvc edge-config` works from the
# image as well.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml ./
COPY authsvc ./authsvc
COPY canwatch_edge ./canwatch_edge
COPY canwatch_stack ./canwatch_stack
COPY nginx ./nginx
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
COPY requirements.lock /tmp/requirements.lock
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir -r /tmp/requirements.lock /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/requirements.lock \
    && useradd --system --uid 10001 authsvc
ENV PYTHONUNBUFFERED=1
USER authsvc
WORKDIR /home/authsvc
EXPOSE 9005
HEALTHCHECK --interval=10s --timeout=2s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9005/healthz', timeout=1)"]
CMD ["authsvc", "serve", "--host", "0.0.0.0", "--port", "9005", "--workers", "2"]
