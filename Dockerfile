# streamvision on a plain CPU: the package with its models, sample clips and ready configs; nothing is
# fetched at run time.
#   docker build -t streamvision .
#   docker run --rm streamvision run --source sample:bikes --max-frames 50 -o /out/bikes.mp4
# compose.yaml runs the camera config in deploy/config/ with the preview port published.

# The wheel is built in a stage of its own so the image carries neither the sources nor the build tools.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamvision/ streamvision/
COPY models/ models/
COPY configs/ configs/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# opencv-python (a dependency) loads libGL and glib even when it never opens a window.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin streamvision \
    && mkdir /out && chown streamvision:streamvision /out
COPY deploy/config/ /config/
USER streamvision
# Relative output paths in a config (events.jsonl, snapshots/, report.json) land here.
WORKDIR /out
# The preview page and Prometheus /metrics of deploy/config/camera.yaml.
EXPOSE 8080
ENTRYPOINT ["streamvision"]
CMD ["run", "--config", "/config/camera.yaml"]
