"""Experiments of the course: sequential-MNIST resolution generalization and bouncing balls.

Each experiment module has profiles (``smoke``, ``cpu``, ``full``), a ``run(...)`` that trains, evaluates and
saves a result record in ``results/``, and a command-line entry used by ``python -m minirims``.
Shared pieces (profiles, provenance, records) are in :mod:`minirims.experiments.common`.
"""
