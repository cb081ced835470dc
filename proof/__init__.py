"""The proof suites that try to break the mesh and the edge: attack (hostile input, ``make
attack``) and chaos (faults under load, ``make chaos``); and procs, the child-process harness
they and bench share."""
