with

landings as (
    select * from {{ ref('ops_landings_per_minute') }}
    where events_landed > 0
),

per_table as (
    select
        event_type as table_name,
        cast(sum(events_landed) as bigint) as rows_landed,
        max(newest_event_at) as newest_event_at,
        max(newest_ingested_at) as newest_ingested_at,
        max(built_at) as built_at
    from landings
    group by 1
),

final as (
    select
        table_name,
        rows_landed,
        newest_event_at,
        newest_ingested_at,
        built_at,
        {{ epoch_seconds('built_at') }} - {{ epoch_seconds('newest_event_at') }} as event_lag_s,
        {{ epoch_seconds('built_at') }} - {{ epoch_seconds('newest_ingested_at') }} as ingest_lag_s
    from per_table
)

select * from final
