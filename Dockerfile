# Image of an autopilot worker (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY autopilot ./autopilot
COPY agents ./agents
COPY tables ./tables
RUN pip install --no-cache-dir . && useradd --create-home autopilot \
    && mkdir -p /data && chown autopilot /data
USER autopilot
ENV AUTOPILOT_DATADIR=/data AUTOPILOT_WEB_PORT=6066
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2).status != 200)"
CMD ["autopilot", "worker", "-l", "info"]
