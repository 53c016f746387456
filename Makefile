# w2v: `make demo` sets everything up and runs the offline demo; `make test` runs the test suite.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/tools/kenlm/bin:$(PATH)

.PHONY: setup demo demo-quick test test-browser bench clean

setup:
	scripts/setup.sh

demo: setup
	recipes/demo/run.sh

demo-quick: setup
	recipes/demo/run.sh --quick

test: setup
	$(VENV)/bin/python -m pytest -q

# the `w2v serve` page in headless chromium (installed from Debian by scripts/install_browser.sh)
test-browser: setup
	scripts/install_browser.sh
	$(VENV)/bin/python -m pytest -q -m browser tests/test_serve_page.py

bench: setup
	bench/run.sh

clean:
	rm -rf $(VENV) tools
