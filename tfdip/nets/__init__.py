"""DIP generator networks (Keras 3). Filled in by the nets module; see :mod:`tfdip.nets.spec`."""
