"""SOTOPIA-pi reproduction library.

Stages import along one direction: data -> llm -> sim -> judge -> pi -> evaluate -> analysis;
`store`, `paths` and `errors` are leaf utilities every stage may use.
"""

__version__ = "0.1.0"
