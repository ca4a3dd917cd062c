"""dlkit-shapes: four miniature plugins, one for each shape of algorithm family the plugin contract serves.

* ``shape_seq2seq``: an encoder-decoder on tuple inputs, with a vocabulary artifact, ``generate`` and ``predict``;
* ``shape_gan``: two models and two optimizers in a hand-written loop, no labels, ``generate``;
* ``shape_agent``: no arrays at all, an environment, a step budget, a replay buffer in the checkpoint;
* ``shape_graph``: one graph with fixed train/validation/test node masks, trained full-batch.

Each trains in seconds on TensorFlow, JAX and PyTorch. The distribution is not installed: its
``dlkit_shapes-0.1.0.dist-info`` sits beside this package, and putting that folder on ``sys.path`` (as
tests/conftest.py does) makes ``importlib.metadata`` find the entry points like those of an installed wheel.
Like any plugin's entry modules, these import only the standard library and ``dlkit.api`` at top level.
"""
