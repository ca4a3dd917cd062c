# The two commands the README promises, each setting up from scratch when needed:
#   make demo   set up, then train the CNN on MNIST and evaluate it (the main job)
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# PyTorch first and pinned: 2.13.0 is the CPU build this project is tested with; a looser spec can
# pull a multi-GB CUDA build. Override on a GPU machine, e.g. make TORCH=torch demo
TORCH  ?= torch==2.13.0
# Offline copies of the datasets (see ../shared/datasets/README.md); used when present.
SHARED ?= ../shared/datasets

.PHONY: setup demo test data clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml examples/dlkit-autoencoder/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
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

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .dlkit-cache .pytest_cache
