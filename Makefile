# Set-up and tests. torch is installed first, pinned, so pip never pulls the multi-GB CUDA build.
# `make install` needs no root (a laptop, macOS); `make test` also installs what only the tests need.
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
	@echo "facerest is installed: $(BIN)/facerest --help"
	@echo "The tests (make test) also need ../shared beside this folder and, for the contact-sheet browser test,"
	@echo "Chromium + chromedriver: make test installs Debian's chromium and chromium-driver when they are missing."

# Headless Chromium + chromedriver for the contact-sheet test (pytest -m browser): Debian packages, needs root/sudo.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then echo "chromium: already installed"; else \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver \
	  || { echo "make browser: apt-get could not install chromium and chromium-driver (needed by tests/report/test_browser.py)" >&2; exit 1; }; fi

test: browser
	$(BIN)/python -m pytest

# Everything but the slow tests (SIGKILL/crash runs, long videos, the 100 MP scan): a quick check while working.
test-fast:
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
