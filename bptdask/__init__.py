"""bptdask: bi-layered parallel CNN training (BPT-CNN) on Dask."""
