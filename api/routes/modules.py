"""GET /api/modules: the modules the caller may export, their columns and the bounds."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CallerDep, ServicesDep
from api.schemas import ErrorBody, Module, ModuleColumn, ModuleLimits, ModuleRelation, Modules
from flows.control.registry import Dataset
from flows.control.settings import Settings
from flows.datapath.access import Caller, readable_modules, readable_relations
from flows.datapath.request import OPERATORS

router = APIRouter(tags=["modules"], responses={401: {"model": ErrorBody}})


@router.get("/api/modules", response_model=Modules)
def list_modules(services: ServicesDep, caller: CallerDep) -> Modules:
    """The caller's modules (those their token permits), the filter operators and limits."""
    settings = services.settings
    return Modules(
        modules=[_module(ds, caller) for ds in readable_modules(services.rt.registry, caller)],
        operators=list(OPERATORS),
        limits=_limits(settings),
    )


def _module(ds: Dataset, caller: Caller) -> Module:
    """One module as the export page shows it."""
    columns = []
    for name in ds.columns:  # allow-listed only: sensitive columns are never named
        col = ds.column(name)
        columns.append(
            ModuleColumn(
                name=name,
                label=col.label,
                type=col.pg_type,
                category=col.kind,
                labels=col.labels,
                filterable=ds.filterable(name),
            )
        )
    label = ds.label or ds.name
    relations = [
        ModuleRelation(
            name=name,
            label=ds.relations[name].title,
            columns=[c.label for c in ds.relations[name].output_columns()],
        )
        for name in readable_relations(caller, ds)
    ]
    return Module(
        name=ds.name,
        label=label,
        key=ds.key,
        date_column=ds.date_column,
        columns=columns,
        relations=relations,
    )


def _limits(settings: Settings) -> ModuleLimits:
    """The request bounds plan_export enforces, and the strategy thresholds."""
    return ModuleLimits(
        direct_max_rows=settings.direct_max_rows,
        stream_max_rows=settings.stream_max_rows,
        max_ids=settings.max_selected_ids,
        max_columns=settings.max_columns,
        max_filters=settings.max_filters,
    )
