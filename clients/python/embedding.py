"""A small deterministic text embedding for the example: no model, no download.

Each word and each of its character trigrams gets a fixed pseudo-random direction in 384
dimensions (seeded by a hash of the feature); a text is the normalised sum of its features'
directions. Texts that share words point the same way (cosine about 0.3 to 0.8), unrelated
texts are near orthogonal (random directions in 384 dimensions), and near spellings ("cat",
"cats") share trigrams. Good enough to show recall working; it knows no synonyms.

To plug in a real model, replace `embed` with one returning a unit vector, for example
sentence-transformers' all-MiniLM-L6-v2, which is 384-d, fractality's 'default' model (for
another dimension, register a model, `SELECT fractality.register_model('mine', 768)`, and give
`Memory(conn, embed, model='mine')`):

    from sentence_transformers import SentenceTransformer
    _model = SentenceTransformer("all-MiniLM-L6-v2")
    def embed(text: str) -> list[float]:
        return _model.encode(text, normalize_embeddings=True).tolist()
"""

import hashlib
import math
import random
import re
from functools import lru_cache

DIMS = 384
TRIGRAM_WEIGHT = 0.3
STOPWORDS = frozenset(
    "a an and are as at be by does do for from has have i in is it its of on or the to"
    " was what when where which who why with you your".split()
)


def words(text: str) -> list[str]:
    """Lower-cased words (letters and digits of any script) without stop words, a plural 's'
    stripped; a text of stop words alone keeps them."""
    found = re.findall(r"[^\W_]+", text.lower())
    if all(w in STOPWORDS for w in found):
        return found
    out = []
    for w in found:
        if w in STOPWORDS:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


@lru_cache(maxsize=8192)
def _direction(feature: str) -> tuple[float, ...]:
    seed = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    return tuple(rng.gauss(0.0, 1.0) for _ in range(DIMS))


def embed(text: str) -> list[float]:
    """The unit 384-d embedding of `text` (deterministic: the same text, the same vector)."""
    features = [(f"w:{w}", 1.0) for w in words(text)]
    for w in words(text):
        padded = f"#{w}#"
        features += [(f"t:{padded[i:i + 3]}", TRIGRAM_WEIGHT) for i in range(len(padded) - 2)]
    if not features:
        # no word at all (punctuation, emoji, nothing): the text itself, so that two such texts
        # are not one memory; a zero vector has no direction, so empty text gets one too
        features = [(f"s:{text.strip()}", 1.0)]
    v = [0.0] * DIMS
    for feature, weight in features:
        for i, x in enumerate(_direction(feature)):
            v[i] += weight * x
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
