"""The outer layer as plain Python: no Dask in here (``cluster`` runs it on a cluster).

- :mod:`~bptdask.outer.run_config`: :class:`~bptdask.outer.run_config.RunConfig`, every setting of a run;
- :mod:`~bptdask.outer.allocation`: IDPA's arithmetic (measured powers, the proportional split);
- :mod:`~bptdask.outer.partition`: one epoch's chunks handed out in rounds (work pulling, stealing, losses);
- :mod:`~bptdask.outer.schedule`: which epochs are open and which part a free worker trains next;
- :mod:`~bptdask.outer.protocol`: what workers and the coordinator say to each other;
- :mod:`~bptdask.outer.weights`: the global weights and the AGWU/SGWU merge rules;
- :mod:`~bptdask.outer.checkpoint`: checkpoints on disk, and where a run resumes;
- :mod:`~bptdask.outer.coordinator`: allocation and weights behind one object (the Dask actor);
- :mod:`~bptdask.outer.worker_loop`: what a worker does with its parts;
- :mod:`~bptdask.outer.supervisor`: the supervisor's recovery rules as a state machine.
"""
