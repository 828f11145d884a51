"""Registration of the plugin's metrics in RecBole's metric registry (in place).

RecBole builds its registry once, at import, from the classes defined in ``recbole.evaluator.metrics``
(``recbole/evaluator/register.py``): ``metrics_dict`` (name -> class, read by ``Evaluator``),
``metric_information`` (name -> ``metric_need``, read by the collector's ``Register``), ``metric_types`` and
``smaller_metrics`` (read by ``Config``). There is no public registration function, so the plugin mutates
these objects in place (rebinding the names would leave the modules that imported them with the old ones).
"""

from recbole.evaluator import register as recbole_register


def register_metric(metric_class):
    """Make ``metric_class`` usable as ``metrics: [<ClassName>]`` (case-insensitive) in every later Config.

    A class whose name equals a RecBole metric's replaces it (used for the vectorised RecBole metrics).
    """
    for attribute in ("metric_need", "metric_type"):
        if not hasattr(metric_class, attribute):
            raise AttributeError(f"metric {metric_class.__name__} has no attribute [{attribute}]")
    name = metric_class.__name__.lower()
    recbole_register.metrics_dict[name] = metric_class
    recbole_register.metric_information[name] = metric_class.metric_need
    recbole_register.metric_types[name] = metric_class.metric_type
    if metric_class.smaller and name not in recbole_register.smaller_metrics:
        recbole_register.smaller_metrics.append(name)
    elif not metric_class.smaller and name in recbole_register.smaller_metrics:
        recbole_register.smaller_metrics.remove(name)
