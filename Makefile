# Set-up and tests. torch is installed first, pinned, so pip never pulls the multi-GB CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
export FACEREST_WEIGHTS_DIR ?= $(abspath ../shared/weights)
# apt needs root: use sudo when not root (CI images run as root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser test test-fast clean

install:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "torch==$(TORCH_VERSION)"
	echo "torch==$(TORCH_VERSION)" > $(VENV)/constraints.txt
	$(BIN)/pip install -c $(VENV)/constraints.txt -e ".[dev]"
	$(MAKE) browser

# Headless Chromium + chromedriver for the contact-sheet test (pytest -m browser); Debian packages, run as root.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium: already installed"; else \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver \
	  || { echo "make browser: apt-get could not install chromium and chromium-driver" >&2; exit 1; }; fi

test:
	$(BIN)/python -m pytest

test-fast:
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
