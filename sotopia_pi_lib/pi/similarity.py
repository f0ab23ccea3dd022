"""Near-duplicate detection for generated tasks.

Measure: cosine similarity of TF-IDF vectors (word 1- and 2-grams, English stop words removed,
sublinear tf) of the scenario followed by both goals. A task whose similarity to any of SOTOPIA's
90 scenarios or to an earlier accepted task reaches the threshold (0.6 by default, set in params)
is a near-duplicate. TF-IDF is cheap, deterministic and catches copied or lightly edited scenarios,
which is what a small generator that was shown an example tends to produce; it does not catch
paraphrases with new wording, and does not try to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity


def task_text(scenario: str, goals: Sequence[str]) -> str:
    return " ".join([scenario, *goals])


class DuplicateFinder:
    """Holds the reference texts (SOTOPIA's, then each accepted task) and scores candidates."""

    def __init__(self, reference: Sequence[str], fit_on: Sequence[str] = ()) -> None:
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), stop_words="english", sublinear_tf=True)
        self.vectorizer.fit([*reference, *fit_on])
        self.sotopia = self.vectorizer.transform(list(reference))
        self.accepted: list = []

    def similarities(self, text: str) -> tuple[float, float]:
        """(max similarity to the reference set, max similarity to accepted tasks)."""
        v = self.vectorizer.transform([text])
        ref = float(cosine_similarity(v, self.sotopia).max()) if self.sotopia.shape[0] else 0.0
        acc = max((float(cosine_similarity(v, a)[0, 0]) for a in self.accepted), default=0.0)
        return ref, acc

    def accept(self, text: str) -> None:
        self.accepted.append(self.vectorizer.transform([text]))


def pairwise_max(texts: Sequence[str]) -> np.ndarray:
    """For each text, its highest similarity to any other text (for reporting)."""
    if len(texts) < 2:
        return np.zeros(len(texts))
    m = cosine_similarity(TfidfVectorizer(ngram_range=(1, 2), stop_words="english").fit_transform(texts))
    np.fill_diagonal(m, 0.0)
    return m.max(axis=1)
