# One image for the care-plan services (for docker-compose.yml; the project itself runs
# without Docker: see README). Dependencies are the pinned set in requirements.lock.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir --no-deps ./shared ./services/plan-service ./services/notification-service
RUN useradd --system --home /app careplan && mkdir -p /data && chown careplan /data
USER careplan
ENV CAREPLAN_DATA_DIR=/data
CMD ["plan-service", "serve"]
