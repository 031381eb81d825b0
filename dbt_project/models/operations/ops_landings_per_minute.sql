-- What landed, counted from the raw tables themselves (rows as landed, before staging deduplicates them):
-- one scan of ingested_at and event_at per table, which the Parquet files hold as plain columns.
{%- set event_tables = raw_event_tables() %}

with

landed as (
    {%- for event_table in event_tables %}
        select
            date_trunc('minute', ingested_at) as landed_minute,
            '{{ event_table }}' as event_type,
            count(*) as events_landed,
            max(event_at) as newest_event_at,
            max(ingested_at) as newest_ingested_at
        from {{ source('raw', event_table) }}
        group by 1
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

dead_letters as (
    select
        date_trunc('minute', ingested_at) as landed_minute,
        regexp_replace(kafka_topic, '^events\.', '') as event_type,
        count(*) as dead_letters
    from {{ source('raw', 'dead_letter') }}
    group by 1, 2
),

final as (
    select
        coalesce(landed.landed_minute, dead_letters.landed_minute) as landed_minute,
        coalesce(landed.event_type, dead_letters.event_type) as event_type,
        coalesce(landed.events_landed, 0) as events_landed,
        coalesce(dead_letters.dead_letters, 0) as dead_letters,
        landed.newest_event_at,
        landed.newest_ingested_at,
        current_timestamp as built_at
    from landed
    full outer join dead_letters
        on landed.landed_minute = dead_letters.landed_minute
        and landed.event_type = dead_letters.event_type
)

select * from final
