"""Dataset inputs of runs written straight into the tables (datasets, run_inputs), for tests
that search by them before any API writes them."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline_server.models import datasets, run_inputs, runs


async def add_dataset_input(
    conn: AsyncConnection, run_id: str, name: str, digest: str, context: str = ""
) -> str:
    """Records that run ``run_id`` used the dataset (name, digest) of its experiment, in
    ``context`` ("" for none), creating the dataset row on first use; returns its id."""
    experiment_id = await conn.scalar(select(runs.c.experiment_id).where(runs.c.run_id == run_id))
    dataset_id = await conn.scalar(
        select(datasets.c.dataset_id).where(
            datasets.c.experiment_id == experiment_id,
            datasets.c.name == name,
            datasets.c.digest == digest,
        )
    )
    if dataset_id is None:
        dataset_id = uuid.uuid4().hex
        await conn.execute(
            insert(datasets).values(
                dataset_id=dataset_id,
                experiment_id=experiment_id,
                name=name,
                digest=digest,
                source_type="local",
                source=f"/data/{name}",
            )
        )
    await conn.execute(
        insert(run_inputs).values(run_id=run_id, dataset_id=dataset_id, context=context)
    )
    return str(dataset_id)
