# authsvc image: the pinned runtime of requirements.lock, run as an unprivileged user.
# The package runs from /app (not installed into site-packages) so that the nginx
# templates beside it are found by `authsvc edge-config`.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock && useradd --system --uid 10001 authsvc
COPY authsvc ./authsvc
COPY nginx ./nginx
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1
USER authsvc
EXPOSE 9005
HEALTHCHECK --interval=10s --timeout=2s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9005/healthz', timeout=1)"]
CMD ["python", "-m", "authsvc", "serve", "--host", "0.0.0.0", "--port", "9005", "--workers", "2"]
