"""``make bench``: every benchmark of ``bench/`` run once, collected into one report
(``bench/report.json``, ``bench/report.md`` and PNG plots under ``bench/report_plots/``),
stamped with the machine and the versions. ``python -m bench.report [--fast]``.

- ``suites``: what runs, with which arguments in the full and the fast mode;
- ``runner``: runs a suite in its own interpreter and takes its last JSON line;
- ``stamp``: machine, versions, commit;
- ``targets``: every target of every suite, met or missed (pure);
- ``render``: the markdown (pure); ``plots``: the PNGs (matplotlib, Agg).
"""
