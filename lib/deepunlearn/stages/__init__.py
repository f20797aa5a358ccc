"""The stages the notebooks run, one leaf module each: train, sweep, unlearn, attack, analyze.

A stage module holds its `run` and its plots, built on the library (configs in `deepunlearn.config`,
the resolved experiment in `deepunlearn.experiment`); no library module and no other stage imports it.
"""
