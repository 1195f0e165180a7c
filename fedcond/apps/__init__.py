"""The apps on top of the engine and the adapters: the ``fedcond`` command line and its runners.

* :mod:`fedcond.apps.cli`: ``fedcond condense | evaluate | show | audit | federate | continual | datasets``;
* :mod:`fedcond.apps.federate`: the Flower simulation behind ``fedcond federate``;
* :mod:`fedcond.apps.continual`: the Avalanche comparison behind ``fedcond continual``.

Benchmarks (``simulations/``) are apps too. Nothing in the engine or the adapters imports them.
"""
