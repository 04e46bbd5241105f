# Two commands do all set-up on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench clean ui

venv: $(STAMP)

# Pinned: constraints.txt fixes every version (torch 2.14.1 / torchvision 0.29.1 come from the
# machine's local wheel store; mlflow 3.17.x).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,energy,detection,demo,nni,ray,server,onnx,openvino,search,timm]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/netzip run recipes/quickstart.yaml

test: $(STAMP)
	$(PY) -m pytest -q

ui: $(STAMP)
	@echo "open the link netzip run printed (…/#/experiments/ID/runs?workflowType=machine_learning), or pick Model training top left"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
