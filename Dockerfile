# authsvc image: the pinned environment of requirements.lock, run as an unprivileged user.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY authsvc ./authsvc
COPY nginx ./nginx
RUN pip install --no-cache-dir --no-deps . && useradd --system --uid 10001 authsvc
USER authsvc
EXPOSE 9005
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9005/healthz', timeout=1)"
CMD ["authsvc", "serve", "--host", "0.0.0.0", "--port", "9005", "--workers", "2"]
