"""Helpers shared by test modules: fakes of the connectors' servers and small worlds built through the engine.

Only modules of this package are imported across test files; a test module never imports another test module.
"""
