"""Graph convolutional network (GCN) on the Planetoid citation graphs.

Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks", ICLR 2017.
Each layer averages a node's neighbourhood (itself included) with the renormalised adjacency

    Â = D̃^-1/2 (A + I) D̃^-1/2,   D̃_ii = Σ_j (A + I)_ij,

and the two-layer model is

    Z = softmax(Â · ReLU(Â X W₀) · W₁),

trained on the labelled nodes' cross-entropy plus 5·10⁻⁴/2 · ‖W₀‖² (the first layer only), with
dropout 0.5 before each layer, 16 hidden units, Adam at 0.01, 200 full-batch epochs, on
row-normalised features; the paper's settings on all three datasets. Reported test accuracy:
Cora 81.5%, CiteSeer 70.3%, PubMed 79.0%.

Data, the full-batch loop and the plot are shared with gat (dlkit/plugins/planetoid.py); the layer
is ``GraphConvolution`` in dlkit/plugins/graph_model.py, an edge-list message passing
(``keras.ops.take`` + ``keras.ops.segment_sum``) that runs on TensorFlow, JAX and PyTorch. spektral
is not a dependency: its layers fail under Keras 3 and its Citation loader fails on current SciPy
(``csr_matrix.A`` is gone).

The headline is test accuracy on the 1,000 test nodes; ``plots/embedding.png`` is a t-SNE of the
hidden layer's 16 features of the test nodes, coloured by class.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import option
from dlkit.plugins.planetoid import DATASETS, GraphConfig, PlanetoidAlgorithm


@dataclass
class GCNConfig(GraphConfig):
    epochs: int = option(200, "Full-batch gradient steps (one per epoch): the most to train for.", min=1)
    hidden: int = option(16, "Hidden units.", min=1)
    dropout: float = option(0.5, "Dropout of each layer's input features.", min=0.0, max=0.95)


class GCN(PlanetoidAlgorithm):
    name = "gcn"
    summary = "Graph convolutional network (Kipf & Welling 2017): Cora, CiteSeer, PubMed node classification"
    config = GCNConfig
    paper = {name: (0.01, 5e-4) for name in DATASETS}  # learning rate, L2 weight decay
    test_config = {"epochs": 3, "hidden": 4}
    api_version = 1

    def network(self, cfg: GCNConfig, data):
        from dlkit.plugins.graph_model import gcn

        return gcn(len(data.info["labels"]), data.input_shape[-1], data.num_classes, hidden=cfg.hidden, dropout=cfg.dropout)

    def decayed(self, model) -> list:
        return [model.get_layer("hidden").kernel]  # as the paper: the first layer's weights only
