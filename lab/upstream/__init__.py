"""The real node (``lab up --real``): upstream control plane and kubelet, PKI, registry, image."""
