"""Distributed learning between nodes: distillation, ensembles and federated averaging."""
