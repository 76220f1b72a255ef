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

from toolkit.lazy import lazy_getattr

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
    "query": "toolkit.search.dispatch:search",
    "search_text": "toolkit.search.dispatch",
    "search_photo": "toolkit.search.dispatch",
    "SearchOptions": "toolkit.search.dispatch",
    "Filters": "toolkit.search.queries",
    "HybridParams": "toolkit.search.queries",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__
