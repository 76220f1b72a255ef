"""Japanese recipe text-to-image search on Elasticsearch.

The public API (imported lazily, so ``import toolkit`` stays cheap: torch and the Elasticsearch client load
on first use)::

    import toolkit

    es = toolkit.make_client()                                   # ES_URL / ES_API_KEY ..., or the local node
    toolkit.build("data/", "model/", toolkit.BuildOptions(encoder="resnet18", weights="random"))
    toolkit.index_dataset(es, "data/", "model/", toolkit.IndexOptions(alias="recipes"))
    print(toolkit.evaluate("model/", es, "recipes")["through_index"]["modes"]["knn"])
    searcher = toolkit.Searcher(es, toolkit.SearchModel.load("model/"), "recipes")
    for hit in toolkit.search_text(searcher, "玉ねぎを飴色になるまで炒める", k=5).hits:
        print(hit.score, hit.step_id, hit.image_path)

See the README, "Python API". Errors are :class:`ToolkitError` subclasses with a message meant for people
(Elasticsearch's own exceptions arrive translated, as the CLI reports them: :class:`EsUnavailable` when it
does not answer); progress bars are off unless asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.lazy import lazy_getattr

# What type checkers and IDEs see (listed in the literal ``__all__``: re-exported); at run time each name loads
# on first use, through __getattr__ and _EXPORTS (tests/test_python_api.py keeps the three alike).
if TYPE_CHECKING:
    from toolkit.data.jsonl import DatasetError
    from toolkit.errors import ConfigError, ModelDirError, ToolkitError
    from toolkit.es.client import EsUnavailable, make_client
    from toolkit.es.config import EsSettings
    from toolkit.evaluation.through_index import evaluate_model as evaluate
    from toolkit.fingerprint import FingerprintMismatch
    from toolkit.image.loading import PhotoSource
    from toolkit.index.bulk import BulkOptions
    from toolkit.index.indexer import IndexOptions, index_dataset
    from toolkit.index.lifecycle import IndexNotFound, remove_old_versions
    from toolkit.index.template import VectorIndexOptions
    from toolkit.index.update import UpdateOptions, delete_recipes, update_index
    from toolkit.model import SearchModel
    from toolkit.pipeline import BuildOptions, build
    from toolkit.search.dispatch import SearchOptions, search_photo, search_text
    from toolkit.search.dispatch import search as query
    from toolkit.search.engine import Group, Hit, Searcher, SearchResult
    from toolkit.search.queries import Filters, HybridParams

__version__ = "0.1.0"

#: Public name -> the module that defines it (``module:attribute`` where the attribute is named otherwise).
#: No public name may be a subpackage's name: importing ``toolkit.search.engine`` binds ``toolkit.search``
#: to the subpackage, so the query dispatcher ``toolkit.search.dispatch.search`` is exported as ``query``.
_EXPORTS = {
    # errors
    "ToolkitError": "toolkit.errors",
    "ConfigError": "toolkit.errors",
    "ModelDirError": "toolkit.errors",
    "FingerprintMismatch": "toolkit.fingerprint",
    "DatasetError": "toolkit.data.jsonl",
    "IndexNotFound": "toolkit.index.lifecycle",
    # Elasticsearch
    "make_client": "toolkit.es.client",
    "EsSettings": "toolkit.es.config",
    "EsUnavailable": "toolkit.es.client",
    # building a model
    "build": "toolkit.pipeline",
    "BuildOptions": "toolkit.pipeline",
    # indexing
    "index_dataset": "toolkit.index.indexer",
    "IndexOptions": "toolkit.index.indexer",
    "BulkOptions": "toolkit.index.bulk",
    "VectorIndexOptions": "toolkit.index.template",
    "update_index": "toolkit.index.update",
    "UpdateOptions": "toolkit.index.update",
    "delete_recipes": "toolkit.index.update",
    "remove_old_versions": "toolkit.index.lifecycle",
    # evaluating
    "evaluate": "toolkit.evaluation.through_index:evaluate_model",
    # searching
    "SearchModel": "toolkit.model",
    "Searcher": "toolkit.search.engine",
    "SearchResult": "toolkit.search.engine",
    "Hit": "toolkit.search.engine",
    "Group": "toolkit.search.engine",
    "query": "toolkit.search.dispatch:search",
    "search_text": "toolkit.search.dispatch",
    "search_photo": "toolkit.search.dispatch",
    "PhotoSource": "toolkit.image.loading",
    "SearchOptions": "toolkit.search.dispatch",
    "Filters": "toolkit.search.queries",
    "HybridParams": "toolkit.search.queries",
}

#: A literal list, so that type checkers count these names as exported.
__all__ = [
    "__version__",
    "BuildOptions",
    "BulkOptions",
    "ConfigError",
    "DatasetError",
    "EsSettings",
    "EsUnavailable",
    "Filters",
    "FingerprintMismatch",
    "Group",
    "Hit",
    "HybridParams",
    "IndexNotFound",
    "IndexOptions",
    "ModelDirError",
    "PhotoSource",
    "SearchModel",
    "SearchOptions",
    "SearchResult",
    "Searcher",
    "ToolkitError",
    "UpdateOptions",
    "VectorIndexOptions",
    "build",
    "delete_recipes",
    "evaluate",
    "index_dataset",
    "make_client",
    "query",
    "remove_old_versions",
    "search_photo",
    "search_text",
    "update_index",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__
