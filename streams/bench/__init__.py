"""``micromoment bench``: how fast and how big the pipeline is, against bare Faust.

One run, on the embedded broker, measures (each module's docstring says precisely how):

=============================  ===================================================  ======================
key                            what                                                 module
=============================  ===================================================  ======================
``faust_count_eps``            a bare Faust agent that only counts, events/s         :mod:`.throughput`
``faust_table_eps``            … with one table update per event                     :mod:`.throughput`
``faust_table_send_eps``       … with one table update and one send per event        :mod:`.throughput`
``pipeline_learn_eps``         the pipeline learning from every event, no triggers   :mod:`.throughput`
``pipeline_recommend_eps``     the pipeline with every event a trigger               :mod:`.throughput`
``latency_ms``                 event → recommendation at 1,000 events/s: p50/95/99   :mod:`.latency`
``rank_ms``                    ranking one user, 10k and 100k-item catalogs          :mod:`.rank`
``bytes_per_user``             memory per user with 100k users in state              :mod:`.memory`
``scaleout_2_workers_ratio``   events/s of 2 workers over 1, 4 partitions            :mod:`.throughput`
=============================  ===================================================  ======================

and the ratios ``learn_vs_table``, ``recommend_vs_table_send`` and ``learn_vs_count``
(:mod:`.report`, which also holds the targets). The bare agents are in :mod:`.bare_app`;
the events every stage uses in :mod:`.workload`.
"""

from streams.bench.cli import add_bench_parser, cmd_bench

__all__ = ["add_bench_parser", "cmd_bench"]
