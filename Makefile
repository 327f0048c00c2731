# mod_pywebsocket: `make serve` to try it, `make test` to test it.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8880
# Debian packages the end-to-end tests drive (Apache + mod_python,
# Chromium, the Perl draft-76 client, openssl for test certificates,
# redis-server and the redis client for Apache's Python for the broker;
# headers, setuptools and gcc to build the C extension for Apache's Python);
# Node.js and npm too when npm is missing (the benchmark's load client).
SYSTEM_PACKAGES := apache2 libapache2-mod-python chromium chromium-driver \
	libprotocol-websocket-perl openssl redis-server python3-redis \
	python3-dev python3-setuptools gcc

.PHONY: serve test test-fast lint format docs bench bench-hostile fuzz system-deps clean

$(VENV)/.installed: setup.py pyproject.toml requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-test.txt
	$(VPY) -m pip install -q -e .
	touch $@

# Install the Debian packages the tests need, when they are missing.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    log=$$(mktemp); \
	    if ! { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	           DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
	             install -y -qq $$missing; } >$$log 2>&1; then \
	      cat $$log; rm -f $$log; echo "apt-get failed (output above)"; exit 1; \
	    fi; rm -f $$log; \
	  else \
	    echo "missing Debian packages:$$missing (run 'sudo make system-deps')"; \
	    [ "$$CI" != true ] || exit 1; \
	  fi; \
	fi

serve: $(VENV)/.installed
	@echo "Console page: http://$(HOST):$(PORT)/console.html"
	$(VPY) -m mod_pywebsocket.standalone -H $(HOST) -p $(PORT) -d example

# Lint and format (ruff; `make format` applies it) and types (mypy, strict
# on the sans-I/O core): pyproject.toml.
PY_DIRS = mod_pywebsocket pywebsocket3 test bench example fuzz
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format $(PY_DIRS)

# The documentation site (Sphinx + MyST), warnings as errors.
docs: $(VENV)/.installed
	$(VENV)/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html

test: system-deps $(VENV)/.installed lint docs
	$(VPY) -m pytest -q -p no:cacheprovider --cov=mod_pywebsocket --cov-branch \
	  --cov-report=term-missing:skip-covered test

# Unit tests only (no Apache, browser or peers).
test-fast: $(VENV)/.installed
	$(VPY) -m pytest -q -m "not apache and not browser and not perl" \
	  --ignore=test/test_bench.py test

# Peer servers, interleaved; BENCH_ARGS="--quick" etc. (bench/run.py -h).
bench: $(VENV)/.installed
	$(VPY) bench/run.py $(BENCH_ARGS)

# Peak and retained server memory under hostile clients (bench/hostile.py).
bench-hostile: $(VENV)/.installed
	$(VPY) bench/hostile.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .coverage htmlcov build *.egg-info .cache

# Fuzz each harness in fuzz/ for FUZZ_SECONDS (atheris; corpus seeds in
# fuzz/corpus/, new inputs kept in .cache/fuzz/).
FUZZ_SECONDS ?= 60
fuzz: $(VENV)/.installed
	$(VPY) -m pip install -q atheris
	@for h in frames handshake extensions deflate; do \
	  mkdir -p .cache/fuzz/$$h && \
	  $(VPY) fuzz/fuzz_$$h.py .cache/fuzz/$$h fuzz/corpus/$$h \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 \
	    -artifact_prefix=.cache/fuzz/$$h- -print_final_stats=1 || exit 1; \
	done
