# The app, with the ETL scheduler it starts by itself: `docker build -t carburoam .`
# Settings come from the environment (README, Configuration); /data keeps the pid file, logs,
# mail files, backups and, without PostgreSQL and S3, the SQLite database and the credentials.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CARBUROAM_DATA_DIR=/data \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN useradd --create-home --uid 10001 carburoam && mkdir -p /data && chown carburoam /data
USER carburoam
VOLUME ["/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "home.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
