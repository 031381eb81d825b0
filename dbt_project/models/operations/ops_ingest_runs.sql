-- Ingest runs from the raw tables' snapshot metadata: the snapshots the tables keep (raw.table_snapshots,
-- read from the pinned metadata files) and those expired since (raw.ingest_snapshots, recorded before
-- expiry). A few rows per micro-batch: no data file is read.
with

kept as (
    select
        table_name,
        snapshot_id,
        committed_at,
        summary
    from {{ raw_table_snapshots() }}
),

expired as (
    select
        -- recorded as the table's identifier (`raw.purchase`); the kept ones by name
        {{ last_part('table_name', '.') }} as table_name,
        snapshot_id,
        committed_at,
        summary
    from {{ source('raw', 'ingest_snapshots') }}
),

snapshots as (
    select * from kept
    union all
    select * from expired
),

-- A snapshot can be both kept and recorded (an expiry that failed after the record), or recorded twice.
{%- set commit_columns %}
        table_name,
        snapshot_id,
        committed_at,
        {{ iso_timestamp(json_text('summary', 'ingest.ingested-at')) }} as ingested_at,
        {{ json_text('summary', 'ingest.run-id') }} as run_id,
        coalesce(cast({{ json_text('summary', 'added-records') }} as bigint), 0) as rows_added
{%- endset %}
commits as (
    {{ distinct_rows_on('snapshots', 'table_name, snapshot_id', commit_columns) }}
),

-- Only commits that landed a micro-batch carry an ingest time (not the dead letters' own commits).
batches as (
    select * from commits
    where ingested_at is not null
),

final as (
    select
        table_name,
        -- commits outside Dagster (`analytics-platform ingest` without a run, tests) have no run id
        run_id,
        count(*) as commits,
        cast(sum(rows_added) as bigint) as rows_landed,
        min(ingested_at) as started_at,
        max(committed_at) as last_committed_at,
        {{ epoch_seconds('max(committed_at)') }} - {{ epoch_seconds('min(ingested_at)') }} as duration_s,
        avg({{ epoch_seconds('committed_at') }} - {{ epoch_seconds('ingested_at') }}) as mean_commit_s,
        max({{ epoch_seconds('committed_at') }} - {{ epoch_seconds('ingested_at') }}) as max_commit_s
    from batches
    group by 1, 2
)

select * from final
