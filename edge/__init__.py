"""The edge pipeline: prune, quantize, convert to TFLite and verify with LiteRT (``dlkit export``)."""
