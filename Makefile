# The two commands the README promises, each setting up from scratch when needed:
#   make demo   set up, then train the CNN on MNIST and evaluate it (the main job)
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# PyTorch first and pinned to 2.13.0, the version this project is tested with (make TORCH=torch for
# the newest). Which build comes depends on the index: from PyPI, Linux gets the multi-GB CUDA build
# (what a GPU machine wants). TORCH_INDEX, when set, is the index torch alone is installed from:
#   make TORCH_INDEX=https://download.pytorch.org/whl/cpu test     the CPU-only build (~190 MB)
#   make TORCH_INDEX=https://download.pytorch.org/whl/cuNNN demo   a chosen CUDA version (pytorch.org lists them)
# Left empty, pip's own configuration decides (a local wheel it is pointed at, else PyPI).
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
# Offline copies of the datasets (see ../shared/datasets/README.md); used when present.
SHARED ?= ../shared/datasets

.PHONY: setup demo test data clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml examples/dlkit-autoencoder/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/pip install -q -e ".[all,test]" -e examples/dlkit-autoencoder
	touch $@

# Copy the offline dataset files into the Keras cache (sha256-checked); without them Keras downloads.
data: setup
	@if [ -d "$(SHARED)/keras" ]; then \
	  $(BIN)/dlkit data add $(SHARED)/keras/mnist.npz $(SHARED)/keras/fashion-mnist/*.gz; \
	else echo "no $(SHARED)/keras: Keras will download the datasets on first use"; fi

demo: data
	$(BIN)/dlkit train cnn
	$(BIN)/dlkit evaluate "$$(ls -td runs/cnn/*/ | head -1)"

# Two workers (pytest-xdist), each test file on one of them: most tests wait on a process starting
# Python, Keras and a backend, so two overlap well even on two cores.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) runs .dlkit-cache .pytest_cache
