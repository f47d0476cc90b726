"""Reasons with evidence, one different sentence per item of a list.

The scoring part names, per item, the component that contributed most and a reason
("more shoes: you bought item-X", "because you viewed item-Y", "popular on mobile this
evening"). Read alone each is fine; on a list they repeat -- ten times "more shoes: you
bought item-X" says nothing about the ten items. Here each item gets an ordered series of
true sentences about it, most telling first, and the list takes for each item the first
sentence no earlier item used:

* content picks cycle through the user's recent items of that category as evidence, then
  "because you like <category>"; a pick the catalog feed listed recently is
  "new in <category>, a category you like";
* collaborative picks cycle through the user's recent items by embedding similarity;
* explored items are "something different", with what is different when known (the
  category is new to the user), then with the evidence any item has;
* any item can fall back on its popularity rank, in its category or overall, on being
  just listed, or on nobody having found it yet.

Alternatives are generated lazily, so a list whose reasons are already distinct costs
nothing extra. Only when every alternative of an item is taken does it repeat its first.
"""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass, field

__all__ = ["Facts", "distinct_reasons", "reasons_for"]

Evidence = tuple[tuple[str, str], ...]  # (verb, item id): "viewed item-1", "bought item-2"


@dataclass(slots=True)
class Facts:
    """What is known about one listed item, for its explanation.

    ``base`` is the scoring part's reason (empty for explored items). ``liked`` is the
    item's category the user recently engaged with, ``evidence`` their recent items in
    it (most recent first); ``new_item``: the catalog feed listed it recently;
    ``undiscovered``: nobody has engaged with it (no popularity); ``asked_new``: the
    user's novelty dial asks for new things (so a new category is named first).
    ``similar`` lazily lists the user's recent items most like this one; ``ranks``
    lazily gives the popularity rank in ``category`` and overall (``None`` for an item
    without popularity).
    """

    item_id: str
    source: str
    base: str
    category: str | None = None
    liked: str | None = None
    evidence: Evidence = ()
    new_item: bool = False
    unseen: bool = False
    undiscovered: bool = False
    asked_new: bool = False
    similar: typing.Callable[[], Evidence] | None = None
    ranks: typing.Callable[[], tuple[int | None, int | None]] | None = field(default=None)


def reasons_for(facts: Facts) -> typing.Iterator[str]:
    """The true sentences about one item, most telling first.

    >>> facts = Facts("i9", "content", "more shoes: you viewed i1", category="shoes",
    ...               liked="shoes", evidence=(("viewed", "i1"), ("bought", "i2")),
    ...               ranks=lambda: (2, 40))
    >>> list(reasons_for(facts))  # doctest: +NORMALIZE_WHITESPACE
    ['more shoes: you viewed i1', 'more shoes: you bought i2', 'because you like shoes',
     '#2 in shoes right now', '#40 most popular right now']
    >>> next(reasons_for(Facts("i7", "explore", "", category="hats", unseen=True)))
    'something different: hats, new to you'
    """
    seen = set()
    for sentence in _sentences(facts):
        if sentence not in seen:
            seen.add(sentence)
            yield sentence


def _sentences(facts: Facts) -> typing.Iterator[str]:
    source, category = facts.source, facts.category
    if source == "explore":  # always says so first, then what evidence there is
        if facts.unseen and category:
            yield f"something different: {category}, new to you"
        yield "something different"
        for sentence in _evidence(facts):
            yield f"something different: {sentence}"
        return
    if facts.asked_new and facts.unseen and category:
        yield f"new to you: {category}"
    if source == "content" and facts.new_item and facts.liked:
        yield f"new in {facts.liked}, a category you like"
    if facts.base:
        yield facts.base
    if source == "content" and facts.liked:
        for verb, item in facts.evidence:
            yield f"more {facts.liked}: you {verb} {item}"
        yield f"because you like {facts.liked}"
    if source == "collaborative" and facts.similar is not None:
        for verb, item in facts.similar():
            yield f"because you {verb} {item}"
    yield from _evidence(facts)


def _evidence(facts: Facts) -> typing.Iterator[str]:
    """What can be said of any item: just listed, undiscovered, or its popularity rank."""
    category = facts.category
    if facts.new_item:
        yield f"just listed in {category}" if category else "just listed"
    if facts.undiscovered:
        yield f"still undiscovered in {category}" if category else "still undiscovered"
    elif facts.ranks is not None:
        in_category, overall = facts.ranks()
        if in_category is not None and category:
            yield f"#{in_category} in {category} right now"
        if overall is not None:
            yield f"#{overall} most popular right now"


def distinct_reasons(items: typing.Sequence[Facts]) -> list[str]:
    """One reason per item, in list order: the first of its sentences not used above it.

    >>> same = [Facts(f"i{n}", "popularity", "popular right now", category="bags",
    ...               ranks=lambda n=n: (n + 1, n + 3)) for n in range(3)]
    >>> distinct_reasons(same)
    ['popular right now', '#2 in bags right now', '#3 in bags right now']
    >>> distinct_reasons([Facts("a", "popularity", "available now")] * 2)  # nothing else known
    ['available now', 'available now']
    """
    used: set[str] = set()
    reasons = []
    for facts in items:
        sentences = reasons_for(facts)
        first = next(sentences, "") or "recommended for you"
        chosen = first
        for sentence in itertools.chain((first,), sentences):
            if sentence not in used:
                chosen = sentence
                break
        used.add(chosen)
        reasons.append(chosen)
    return reasons
