# `make run` and `make test` do all the set-up on a fresh machine: a virtualenv in .venv,
# streamvision installed into it (editable), then the job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint test-mediapipe test-convert test-cluster

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/streamvision run

lint: $(STAMP)
	$(BIN)/ruff check streamvision tests tools
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The MediaPipe face backend (extra `mediapipe`) is tested in a virtualenv of its own: mediapipe
# pulls in opencv-contrib-python, which writes the same cv2/ files as streamvision's opencv-python,
# so both are removed and only opencv-contrib-python (a superset) is put back.
MP_VENV ?= .venv-mediapipe
MP_BIN := $(MP_VENV)/bin
MP_STAMP := $(MP_VENV)/.installed

$(MP_STAMP): pyproject.toml
	$(PYTHON) -m venv $(MP_VENV)
	$(MP_BIN)/python -m pip install --quiet --upgrade pip
	$(MP_BIN)/python -m pip install --quiet -e '.[dev,mediapipe]'
	contrib=$$($(MP_BIN)/python -m pip show opencv-contrib-python | sed -n 's/^Version: //p') \
	&& test -n "$$contrib" \
	&& $(MP_BIN)/python -m pip uninstall --quiet -y opencv-python opencv-contrib-python \
	&& $(MP_BIN)/python -m pip install --quiet --no-deps "opencv-contrib-python==$$contrib"
	touch $(MP_STAMP)

test-mediapipe: $(MP_STAMP)
	$(MP_BIN)/python -c "import cv2, mediapipe.tasks.python.vision; print('cv2', cv2.__version__)"
	$(MP_BIN)/pytest tests/test_mediapipe.py tests/test_faces_backends.py tests/test_faces_e2e.py

# Model conversion (extra `convert`: TensorFlow, tf2onnx) is tested in a virtualenv of its own, so the
# runtime venv never carries TensorFlow. Its tests build tiny Keras / TFLite / TF.js models on the fly.
# The training tests need TensorFlow too and share the `convert` marker, hence the `train` extra.
CV_VENV ?= .venv-convert
CV_BIN := $(CV_VENV)/bin
CV_STAMP := $(CV_VENV)/.installed

$(CV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(CV_VENV)
	$(CV_BIN)/python -m pip install --quiet --upgrade pip
	$(CV_BIN)/python -m pip install --quiet -e '.[convert,train,dev]'
	touch $(CV_STAMP)

test-convert: $(CV_STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 $(CV_BIN)/python -c \
		"import tensorflow, tf2onnx; print('tensorflow', tensorflow.__version__, 'tf2onnx', tf2onnx.__version__)"
	$(CV_BIN)/pytest -m convert

# The Ray commands (extra `cluster`: streamvision cluster run, batch) are tested in a virtualenv of their
# own, against Ray nodes the tests start: a head on loopback, and for the node-loss test a head plus a
# second node in a network namespace of its own (needs root and iproute2; skipped otherwise).
CL_VENV ?= .venv-cluster
CL_BIN := $(CL_VENV)/bin
CL_STAMP := $(CL_VENV)/.installed

$(CL_STAMP): pyproject.toml
	$(PYTHON) -m venv $(CL_VENV)
	$(CL_BIN)/python -m pip install --quiet --upgrade pip
	$(CL_BIN)/python -m pip install --quiet -e '.[dev,cluster]'
	touch $(CL_STAMP)

test-cluster: $(CL_STAMP)
	$(CL_BIN)/python -c "import ray; print('ray', ray.__version__)"
	$(CL_BIN)/pytest -m cluster
