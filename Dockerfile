# One image for the five Conveyor services; docker-compose.yml gives each its command
# (python -m services.<name>). No ENTRYPOINT, so that command runs as written.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BENTOML_DO_NOT_TRACK=True

RUN useradd --create-home --uid 10001 --user-group conveyor

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall them:
# with no package directories yet, `pip install .` installs only the dependencies and an empty
# distribution, which is removed again. README* may not exist: it is only package metadata.
COPY pyproject.toml README* ./
RUN pip install . && pip uninstall --yes conveyor

# Then the project itself (runtime dependencies only: no [dev] extra).
COPY shared ./shared
COPY services ./services
COPY infra ./infra
RUN pip install --no-deps . && rm -rf build ./*.egg-info

USER conveyor
# Outside /src, so that `python -m services.<name>` imports the installed package.
WORKDIR /home/conveyor
